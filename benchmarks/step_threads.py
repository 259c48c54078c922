"""Two steps at once on the cores: TensorFlow threads per step, measured (issue 33).

Runs the same compression step (pruning the digits CNN, 6 epochs, as the default run
does) as separate processes: one alone with all cores' threads, then two at the same
time with all cores' threads each (what two steps do without a setting: oversubscribed),
then two at the same time with the cores divided between them (what
``client/concurrent_dag.py`` gives them). Prints wall seconds per case, alternating the
cases over ``--rounds`` rounds.

    .venv/bin/python benchmarks/step_threads.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

STEP = """
import sys
from tfopt.compression import prune
data, out, base = sys.argv[1:4]
prune.prune_model(base, data, out, prune.PruneConfig(epochs=6))
"""


def prepare(root: str) -> tuple[str, str]:
    from tfopt.data import ingest
    from tfopt.training import models, train

    data = os.path.join(root, "data")
    ingest.ingest(data, ingest.IngestConfig(source="builtin:digits"))
    base = os.path.join(root, "base")
    train.train_model(data, base, train.TrainConfig(model=models.ModelConfig(), epochs=5))
    return data, base


def run(copies: int, threads: int, data: str, base: str, root: str) -> float:
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads),
           "TF_NUM_INTEROP_THREADS": str(threads)}  # fmt: skip
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", STEP, data, tempfile.mkdtemp(dir=root), base],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(copies)
    ]
    if any(p.wait() for p in procs):
        raise SystemExit("a step failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    cases = {
        f"1 step, {cores} threads": (1, cores),
        f"2 steps at once, {cores} threads each": (2, cores),
        f"2 steps at once, {max(1, cores // 2)} thread(s) each": (2, max(1, cores // 2)),
    }
    with tempfile.TemporaryDirectory() as root:
        data, base = prepare(root)
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.rounds):
            for name, (copies, threads) in cases.items():
                times[name].append(run(copies, threads, data, base, root))
    print(f"| case ({cores} cores) | wall s, median of {args.rounds} | per step |")
    print("|---|---:|---:|")
    for name, (copies, _) in cases.items():
        median = statistics.median(times[name])
        print(f"| {name} | {median:.1f} | {median / copies:.1f} |")


if __name__ == "__main__":
    main()
