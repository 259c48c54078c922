"""Evaluation cost vs the default run's wall time, and latency repeatability.

1. Runs ``tfopt run`` with default parameters (or reuses ``--run-dir``, the
   output directory of an earlier ``tfopt run``), reading its wall time.
2. In a fresh Python process (as the evaluate step is: interpreter and
   TensorFlow start-up included) evaluates every variant of that run with the
   default EvalConfig, timing the process from start to the end of the
   evaluation: the evaluate step's own cost.
3. In the same process evaluates again and compares each variant's batch-1
   p50 between the two passes (target: within 15% on an idle machine).

    .venv/bin/python benchmarks/evaluation.py [--run-dir tfopt-run] [-- --set epochs=5]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

WORKER = r"""
import json, sys, time
t0 = float(sys.argv[1])
from tfopt.evaluation import evaluate as ev
spec = json.loads(sys.argv[2])
cands = [ev.Candidate(c["name"], c["path"], c["format"], {}) for c in spec["candidates"]]
first = ev.evaluate_candidates(cands, spec["dataset"], ev.EvalConfig())
step = time.time() - t0
second = ev.evaluate_candidates(cands, spec["dataset"], ev.EvalConfig())
keep = ("name", "latency_ms_p50", "latency_ms_p99", "throughput_per_s", "eval_seconds",
        "peak_rss_bytes", "memory_bytes", "error")
print("RESULT " + json.dumps({"step_seconds": step,
      "first": [{k: r.get(k) for k in keep} for r in first],
      "second": [{k: r.get(k) for k in keep} for r in second]}))
"""


def run_spec(run_dir: str, extra: list[str]) -> tuple[dict, dict] | None:
    """(summary.json, {"dataset", "candidates"}) of ``run_dir``, or of a new ``tfopt run``
    with ``extra`` when ``run_dir`` is empty; None when the run has no dataset artifact."""
    out = run_dir
    if not out:
        out = tempfile.mkdtemp(prefix="tfopt-evalbench-")
        tfopt = os.path.join(os.path.dirname(sys.executable), "tfopt")
        subprocess.run(
            [tfopt, "run", "--output-dir", out, *extra],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    schemas = sorted(
        glob.glob(os.path.join(out, "artifacts", "**", "schema.json"), recursive=True),
        key=os.path.getmtime,
    )
    if not schemas:
        print(f"{out}: no dataset artifact (schema.json) found", file=sys.stderr)
        return None
    spec = {
        "dataset": os.path.dirname(schemas[-1]),
        "candidates": [
            {"name": v["name"], "path": v["path"], "format": v["format"]}
            for v in summary["variants"]
        ],
    }
    return summary, spec


def worker_result(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh Python (TensorFlow imported there, as in a step) and return
    the JSON it prints on its ``RESULT `` line."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return json.loads(next(ln[7:] for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="", help="output dir of an earlier `tfopt run`")
    parser.add_argument("extra", nargs="*", help="extra arguments for tfopt run")
    args = parser.parse_args()
    found = run_spec(args.run_dir, args.extra)
    if found is None:
        return 1
    summary, spec = found
    result = worker_result(WORKER, repr(time.time()), json.dumps(spec))
    wall = summary.get("wall_seconds")
    step = result["step_seconds"]
    print(f"cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.2f}")
    print(f"default run wall time: {wall} s ({len(spec['candidates'])} variants)")
    print(f"evaluate step (fresh process, TF import + evaluation): {step:.1f} s")
    if wall:
        print(
            f"evaluation / rest of the run: {step / (wall - step) * 100:.1f}%  "
            f"(share of the whole run: {step / wall * 100:.1f}%)"
        )
    print(
        f"{'variant':<16} {'eval s':>7} {'p50 #1 ms':>10} {'p50 #2 ms':>10} {'diff':>7} "
        f"{'p99 ms':>8} {'ex/s':>10} {'peak MiB':>9} {'+MiB':>6}"
    )
    worst = 0.0
    for a, b in zip(result["first"], result["second"], strict=True):
        if a.get("error"):
            print(f"{a['name']:<16} error: {a['error']}")
            continue
        diff = abs(a["latency_ms_p50"] - b["latency_ms_p50"]) / min(
            a["latency_ms_p50"], b["latency_ms_p50"]
        )
        worst = max(worst, diff)
        print(
            f"{a['name']:<16} {a['eval_seconds']:7.2f} {a['latency_ms_p50']:10.4f} "
            f"{b['latency_ms_p50']:10.4f} {diff * 100:6.1f}% {a['latency_ms_p99']:8.4f} "
            f"{a['throughput_per_s']:10.0f} {a['peak_rss_bytes'] / 2**20:9.0f} "
            f"{a['memory_bytes'] / 2**20:6.1f}"
        )
    print(f"largest p50 difference between the two passes: {worst * 100:.1f}% (target <= 15%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
