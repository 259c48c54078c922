"""Examples per second: two loopback MultiWorkerMirroredStrategy workers vs one worker.

    .venv/bin/python benchmarks/multiworker.py [--epochs 6]

Both runs use the same global batch (one worker x 256, two workers x 128) on
builtin:digits and a small CNN; throughput is the chief's steady-state
examples/s (epochs after the first). On a 2-core machine both workers share
the same cores, so the ratio measures MultiWorkerMirroredStrategy's overhead
(gRPC collectives per step), not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import multiworker as mw


def run(n: int, dataset: str, workdir: Path, epochs: int) -> tuple[float, float]:
    workdir.mkdir()
    config = {
        "model": {"arch": "cnn", "width": 16},
        "epochs": epochs,
        "batch_size": 256 // n,
        "early_stopping_patience": 0,
        "learning_rate": 0.01,
    }
    start = time.perf_counter()
    procs = mw.start_cluster(
        n, dataset, str(workdir / "model"), config, workdir, result=str(workdir / "result.json")
    )
    codes = mw.wait_all(procs, 1200)
    if codes != [0] * n:
        raise SystemExit(f"{n}-worker run failed: {codes}; see {workdir}")
    result = json.loads((workdir / "result.json").read_text())
    return result["metrics"]["examples_per_second"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    from tfopt.data import ingest

    with tempfile.TemporaryDirectory() as tmp:
        dataset = os.path.join(tmp, "digits")
        ingest.ingest(dataset, ingest.IngestConfig())
        one, wall1 = run(1, dataset, Path(tmp) / "one", args.epochs)
        two, wall2 = run(2, dataset, Path(tmp) / "two", args.epochs)
    print(f"cores: {os.cpu_count()}  epochs: {args.epochs}  global batch: 256")
    print(f"{'workers':>8} {'examples/s':>12} {'wall s':>8}")
    print(f"{1:>8} {one:>12.0f} {wall1:>8.1f}")
    print(f"{2:>8} {two:>12.0f} {wall2:>8.1f}")
    print(f"ratio two/one: {two / one:.2f}")


if __name__ == "__main__":
    main()
