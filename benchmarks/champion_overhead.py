"""What the champion and the data validation (issue 34) add to a run.

1. Ingest with and without its statistics (the same source, in this process, best of 3).
2. ``tfopt run`` twice into one output directory: the first run deploys v1 (no champion),
   the second finds it as champion. From the second run's console: the ``validate-data``
   step's wall time (on the critical path: training waits for it), and from its
   ``summary.json`` the champion's ``eval_seconds`` in the evaluate step (also on the path).

    .venv/bin/python benchmarks/champion_overhead.py [--source builtin:digits] [-- --set ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

_STEP = re.compile(r"\]\s+(\S+) \.\.\. done (\d+\.\d+) s")


def ingest_seconds(source: str, with_statistics: bool, repeats: int = 3) -> float:
    from tfopt.data import ingest, statistics

    saved = statistics.DatasetStatistics.add, statistics.DatasetStatistics.result
    if not with_statistics:
        statistics.DatasetStatistics.add = lambda self, *a: None  # type: ignore[method-assign]
        statistics.DatasetStatistics.result = lambda self, *a: {}  # type: ignore[method-assign]
    best = float("inf")
    try:
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                ingest.ingest(os.path.join(tmp, "ds"), ingest.IngestConfig(source=source))
                best = min(best, time.perf_counter() - start)
    finally:
        statistics.DatasetStatistics.add, statistics.DatasetStatistics.result = saved
    return best


def run(out: str, extra: list[str]) -> tuple[float, dict, dict[str, float]]:
    tfopt = os.path.join(os.path.dirname(sys.executable), "tfopt")
    start = time.perf_counter()
    done = subprocess.run(
        [tfopt, "run", "--output-dir", out, *extra], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"tfopt run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    steps = {m.group(1): float(m.group(2)) for m in _STEP.finditer(done.stdout)}
    with open(os.path.join(out, "summary.json")) as fh:
        return wall, json.load(fh), steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="builtin:digits")
    parser.add_argument("--output-dir", default="")
    parser.add_argument("extra", nargs="*", help="more arguments for tfopt run")
    args = parser.parse_args()
    with_stats = ingest_seconds(args.source, True)
    without = ingest_seconds(args.source, False)
    print(f"ingest {args.source}: {without:.2f} s without statistics, {with_stats:.2f} s with")
    out = args.output_dir or tempfile.mkdtemp(prefix="tfopt-champion-")
    extra = ["--set", f"source={args.source}", *args.extra]
    for n in (1, 2):
        wall, summary, steps = run(out, extra)
        champion = summary.get("champion") or {}
        validate = steps.get("validate-data")
        evaluate = steps.get("evaluate")
        seconds = champion.get("eval_seconds") or 0.0
        added = (validate or 0.0) + seconds
        print(
            f"run {n}: wall {wall:.1f} s; validate-data {validate} s; evaluate {evaluate} s, "
            f"of which the champion {seconds:.2f} s ({champion.get('reason') or 'evaluated'}); "
            f"added {added:.1f} s = {100 * added / wall:.1f}% of the run; "
            f"blessed {summary['blessed']}, serving {summary.get('serving')}"
        )
        dv = (summary.get("data_validation") or {}).get("validation") or {}
        if dv.get("classes"):
            worst = max((f.get("js") or 0.0 for f in dv.get("features") or []), default=0.0)
            print(f"  drift: class L-inf {dv['classes']['linf']}, worst feature JS {worst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
