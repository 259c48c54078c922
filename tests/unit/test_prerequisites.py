"""Missing installs that ``make test`` provides: a skip on a developer's machine, a failure
under CI=true (helpers/prerequisites.py); ``images/engine.sh`` tells "cannot install
here" (3) from "the install failed" (4); ``make fashion-mnist`` fails under CI=true when
the dataset is still missing.

The scripts run with a PATH of their own: ``id`` says who we are, and apt-get, podman
and friends are stand-ins that fail (the system boundary; nothing is installed).
"""

import shutil
import subprocess
from pathlib import Path

import pytest

from helpers import prerequisites

ROOT = Path(__file__).resolve().parents[2]
REAL = {name: shutil.which(name) for name in ("bash", "grep", "mkdir", "cat", "tail")}
ENGINE_TOOLS = ("podman", "buildah", "runc", "debootstrap")


def _bin(tmp_path: Path, uid: int, **tools: int) -> Path:
    """A PATH directory: ``id -u`` prints ``uid``; each of ``tools`` exits with its code."""
    path = tmp_path / "bin"
    path.mkdir()
    for name, real in REAL.items():
        (path / name).symlink_to(real)
    scripts = {
        "id": f"echo {uid}",
        **{n: f"echo {n}: stand-in >&2; exit {c}" for n, c in tools.items()},
    }
    for name, body in scripts.items():
        (path / name).write_text(f"#!/bin/sh\n{body}\n")
        (path / name).chmod(0o755)
    return path


def _engine(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [REAL["bash"], str(ROOT / "images" / "engine.sh")],
        env={"PATH": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_engine_cannot_be_installed_without_root(tmp_path):
    proc = _engine(_bin(tmp_path, uid=1000))
    assert proc.returncode == prerequisites.NO_ENGINE_HERE, proc.stderr
    assert "cannot apt-get install them (need root + apt)" in proc.stderr


def test_engine_install_that_fails_is_a_broken_install(tmp_path):
    proc = _engine(_bin(tmp_path, uid=0, **{"apt-get": 100}))
    assert proc.returncode == prerequisites.ENGINE_BROKEN, proc.stderr
    assert f"apt-get install {' '.join(ENGINE_TOOLS)} failed" in proc.stderr


def test_engine_that_does_not_work_is_a_broken_install(tmp_path):
    tools = dict.fromkeys(ENGINE_TOOLS, 0) | {"podman": 125}
    proc = _engine(_bin(tmp_path, uid=1000, **tools))
    assert proc.returncode == prerequisites.ENGINE_BROKEN, proc.stderr
    assert "podman info fails: podman: stand-in" in proc.stderr


def _make_fashion_mnist(path: Path, tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [shutil.which("make"), "-s", "-C", str(ROOT), "fashion-mnist"]
        + [f"CI={ci}", f"FASHION_MNIST_DIR={tmp_path / 'not-installed'}"],
        env={"PATH": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("uid", [1000, 0])
def test_make_fashion_mnist_fails_under_ci_when_the_dataset_is_missing(tmp_path, uid):
    path = _bin(tmp_path, uid=uid, **{"apt-get": 100})
    proc = _make_fashion_mnist(path, tmp_path, ci="true")
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "error: CI=true but" in proc.stderr and "is missing" in proc.stderr
    # on a developer's machine the same is a note or a warning, and make goes on
    proc = _make_fashion_mnist(path, tmp_path, ci="")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    said = "note: builtin:fashion_mnist needs" if uid else "warning: could not install"
    assert said in proc.stdout


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_a_missing_install_fails_under_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="checkov is missing"):
        prerequisites.missing("checkov", "make build/checkov-venv/bin/checkov")
