"""The tfopt image built from this checkout, and the pipeline run in it (issue 17).

Cached between runs, so only the first run on a machine pays the cold build:
- podman's store (/var/lib/containers): the local base (`images/base.sh`, tagged by
  the script's hash) and the CPU image, rebuilt only when its build hash (the
  wheel's file contents, the Dockerfile, the pins, the base tag) changes;
- pip's cache (~/.cache/pip, mounted into the build, never a layer): the wheels.

Skips only where no engine can be installed (not root or no apt, and no podman:
images/engine.sh exits 3 and says why), and fails instead under CI=true; in CI (root,
apt reachable) it installs podman and runs. A failed install, or a podman that does
not work (engine.sh exits 4), fails everywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tfopt import __version__
from tfopt.client import docker as tfopt_docker
from tfopt.client.local import run_local
from tfopt.components._image import BASE_IMAGE, GPU_IMAGE

from helpers.containers import FAST, quick
from helpers.prerequisites import NO_ENGINE_HERE, missing

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]

# run inside the image: who runs, what is installed, and the LiteRT adapter on a real model
IN_IMAGE = r"""
import importlib.metadata as md, json, os, subprocess, sys
import numpy as np
import tfopt
from tfopt._keras import keras, tf
from tfopt.evaluation import runtime
model = keras.Sequential([keras.layers.Input((4,)), keras.layers.Dense(3)])
content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
x = np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4)
os.environ["TFOPT_TFLITE_RUNTIME"] = "litert"
got = runtime.TFLiteModel.from_content(content).predict(x)
pip = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "version": tfopt.__version__,
    "dist_version": md.version("tfopt"), "pip_check": pip.returncode, "pip_out": pip.stdout,
    "runtime": runtime.runtime_name(),
    "max_error": float(np.abs(got - model.predict(x, verbose=0)).max()),
}))
"""


def _build(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["images/build.sh"],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable, **env},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def image() -> str:
    """The CPU image, built here (or found cached); skips only where no engine can be
    installed (not root or no apt), and never under CI=true."""
    proc = _build(LOCAL_BASE="1", FLAVOURS="cpu")
    if proc.returncode == NO_ENGINE_HERE:  # not root or no apt: a skip, except in CI
        missing("a container engine", proc.stderr.strip().splitlines()[-1])
    # anything else fails: a failed install or a podman that does not work included
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(rf"^image {re.escape(BASE_IMAGE)} size \d+ MB$", proc.stdout, re.M)
    return BASE_IMAGE


@pytest.fixture(scope="module")
def client(image):
    import docker

    with tfopt_docker.engine() as url:
        c = docker.DockerClient(base_url=url, timeout=300)
        yield c
        c.close()


def test_a_rebuild_with_nothing_changed_is_cached(image):
    proc = _build(LOCAL_BASE="1", FLAVOURS="cpu")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"cached {image} (build hash" in proc.stdout, proc.stdout


def test_image_runs_as_the_non_root_user_with_a_clean_install(image, client):
    out = client.containers.run(image, ["python", "-c", IN_IMAGE], remove=True, stderr=False)
    facts = json.loads(out.decode().strip().splitlines()[-1])
    assert (facts["uid"], facts["gid"]) == (tfopt_docker.IMAGE_UID, tfopt_docker.IMAGE_UID)
    assert facts["pip_check"] == 0, facts["pip_out"]
    assert facts["version"] == facts["dist_version"] == __version__
    assert facts["runtime"] == "ai_edge_litert"  # LiteRT from /opt/tfopt/litert-site
    assert facts["max_error"] < 1e-5


def test_one_second_steps_keep_their_exit_status(image, tmp_path):
    """The container of a step that exits at once is kept until its status is read.

    Without engine_proxy, podman 4.3 answers 500 "no such container" here (the task
    fails though it succeeded) and Docker 404 (kfp then reports success even for the
    failing step).
    """
    from kfp import local

    containers = {c.id for c in _all_containers()}
    with tfopt_docker.runner(str(tmp_path), {}, quick.pipeline_spec) as runner:
        local.init(runner=runner, pipeline_root=str(tmp_path / "artifacts"), raise_on_error=True)
        assert quick(code=0).output == "done"
        with pytest.raises(RuntimeError, match="finished with status .*FAILURE"):
            quick(code=3)
    assert {c.id for c in _all_containers()} == containers  # the proxy removed them


def _all_containers() -> list:
    import docker

    with tfopt_docker.engine() as url:
        c = docker.DockerClient(base_url=url, timeout=60)
        try:
            return c.containers.list(all=True)
        finally:
            c.close()


def test_fast_pipeline_in_containers_matches_a_subprocess_run(image, tmp_path):
    boxed = run_local(dict(FAST), str(tmp_path / "docker"), runner="docker")
    plain = run_local(dict(FAST), str(tmp_path / "subprocess"))
    by_name = [{v["name"]: v for v in s["variants"]} for s in (boxed, plain)]
    assert set(by_name[0]) == set(by_name[1]) == {"baseline", "tflite_int8"}
    # same seed, op determinism and TF build: the same model either way (measured: equal);
    # at most one test example apart, should the container's CPU kernels differ
    one_example = 1.01 / plain["dataset"]["num_test"]
    for name in by_name[1]:
        assert by_name[0][name]["accuracy"] == pytest.approx(
            by_name[1][name]["accuracy"], abs=one_example
        )
    assert boxed["selected"] == plain["selected"] and boxed["blessed"] is plain["blessed"] is True
    serving = boxed["serving"]
    assert serving["smoke_test"] == "passed"
    # the repository the deploy step wrote in its container is on this machine
    assert os.path.isdir(os.path.join(serving["model_base_path"], serving["model_name"], "1"))


def test_gpu_flavour_renders_and_passes_the_static_scan(tmp_path):
    proc = _build(RENDER="1", FLAVOURS="gpu")
    assert proc.returncode == 0, proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if " build " in ln)
    assert "BASE_IMAGE=tensorflow/tensorflow:2.21.0-gpu " in line
    assert f"--tag {GPU_IMAGE} " in line + " " and "IMAGE_TITLE=tfopt-gpu" in line
    checkov = os.environ.get("TFOPT_CHECKOV") or str(ROOT / "build/checkov-venv/bin/checkov")
    if not Path(checkov).is_file():
        checkov = shutil.which("checkov") or ""
    if not checkov:
        missing("checkov", "tests/unit/test_launch_checkov.py says how")
    dockerfile = (ROOT / "images/Dockerfile").read_text()
    (tmp_path / "Dockerfile").write_text(
        dockerfile.replace("FROM ${BASE_IMAGE}", "FROM tensorflow/tensorflow:2.21.0-gpu")
    )
    scan = subprocess.run(
        [checkov, "-f", str(tmp_path / "Dockerfile"), "--framework", "dockerfile"]
        + ["-o", "json", "--skip-download", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    report = json.loads(scan.stdout)
    assert report["summary"]["passed"] > 10, scan.stderr[-2000:]
    assert report["results"]["failed_checks"] == []
