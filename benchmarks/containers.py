"""Container figures (issue 17): image size, cached rebuild, step start-up, the fast pipeline.

    .venv/bin/python benchmarks/containers.py [--skip-pipeline] [--out containers.json]

Needs the CPU image (`make images`, as root). Prints one Markdown table with the
load average next to each figure (the machine may be shared). The cold build is
not repeated here: `images/build.sh` prints it ("built ... in N s").
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tfopt import fsutil  # noqa: E402
from tfopt.client import docker as tfopt_docker  # noqa: E402
from tfopt.client.local import run_local  # noqa: E402
from tfopt.components._image import BASE_IMAGE  # noqa: E402

from helpers.containers import FAST, quick  # noqa: E402


def load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def sizes(engine: str) -> tuple[int, int]:
    """(uncompressed bytes as the engine reports, bytes of `<engine> save | gzip`)."""
    raw = subprocess.run(
        [engine, "image", "inspect", "--format", "{{ .Size }}", BASE_IMAGE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    gz = subprocess.run(
        f"{engine} save {BASE_IMAGE} | gzip | wc -c",
        shell=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(raw.strip()), int(gz.strip())


def cached_rebuild() -> float:
    """Seconds of `images/build.sh` with nothing changed (a first call brings it up to date)."""

    def build() -> str:
        env = {**os.environ, "LOCAL_BASE": "1", "FLAVOURS": "cpu", "PYTHON": sys.executable}
        return subprocess.run(
            ["images/build.sh"], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout

    build()
    start = time.perf_counter()
    out = build()
    assert "cached " in out, out  # the tree changed between the two calls: run again
    return time.perf_counter() - start


def step_startup(root: str) -> tuple[float, float]:
    """Wall seconds of one trivial step: (subprocess runner, docker runner)."""
    from kfp import local

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=f"{root}/sub")
    start = time.perf_counter()
    assert quick(code=0).output == "done"
    plain = time.perf_counter() - start
    with tfopt_docker.runner(f"{root}/box", {}, quick.pipeline_spec) as runner:
        local.init(runner=runner, pipeline_root=f"{root}/box/artifacts")
        start = time.perf_counter()
        assert quick(code=0).output == "done"
        boxed = time.perf_counter() - start
    return plain, boxed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="podman", help="CLI for the size figures")
    parser.add_argument("--skip-pipeline", action="store_true")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    print("| figure | value | load (1 min) |\n| --- | ---: | ---: |", flush=True)

    def add(row: tuple[str, str, str]) -> None:
        rows.append(row)
        print("| " + " | ".join(row) + " |", flush=True)

    raw, gz = sizes(args.engine)
    add(
        (
            "image size, uncompressed / `save`, gzip",
            f"{raw / 1e6:,.0f} MB / {gz / 1e6:,.0f} MB",
            load(),
        )
    )
    add(("rebuild with nothing changed", f"{cached_rebuild():.1f} s", load()))
    root = tempfile.mkdtemp(prefix="tfopt-bench-containers-")
    plain, boxed = step_startup(root)
    add(
        (
            "trivial step: subprocess / container",
            f"{plain:.1f} s / {boxed:.1f} s ({boxed / plain:.1f}x)",
            load(),
        )
    )
    if not args.skip_pipeline:
        # subprocess warm (the default: steps forked from one pre-imported parent), cold, docker
        for name, runner, warm in (
            ("subprocess", "subprocess", True),
            ("subprocess --cold", "subprocess", False),
            ("docker", "docker", False),
        ):
            summary = run_local(dict(FAST), f"{root}/{name}", runner=runner, warm=warm)
            add((f"fast pipeline, {name}", f"{summary['wall_seconds']:.1f} s", load()))
    if args.out:
        fsutil.write_json(args.out, {"rows": rows})


if __name__ == "__main__":
    main()
