"""Does evaluating the candidates at the same time pay? (issue 33, item 6)

    .venv/bin/python benchmarks/evaluate_concurrency.py [--run-dir tfopt-run] [--workers 2]

In one fresh Python process (TensorFlow imported once, as in the evaluate step), over the
candidates of a ``tfopt run`` (default parameters unless ``--run-dir`` is given):

1. ``sequential``: every candidate measured whole, one after another (today's step).
2. ``accuracy only, sequential``: the same with the latency and throughput timing cut
   to one call: what the test-split pass (load, predict, metrics) costs alone.
3. ``accuracy only, N at once``: that pass for N candidates at a time (threads: TF and
   the TFLite interpreter release the GIL while they compute).
4. ``whole, N at once``: every candidate measured whole, N at a time, to show what
   latency figures measured beside another candidate look like.

The design that keeps latency clean measures accuracy N at once, then latency alone:
its time is (3) + ((1) - (2)). Printed with the p50 of (4) against (1) per candidate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from evaluation import run_spec, worker_result

WORKER = r"""
import dataclasses, json, sys, time
from concurrent.futures import ThreadPoolExecutor
from tfopt.evaluation import evaluate as ev
spec, workers = json.loads(sys.argv[1]), int(sys.argv[2])
full = ev.EvalConfig()
quick = dataclasses.replace(full, latency_warmup=0, latency_iterations=1,
                            latency_min_seconds=0.0, throughput_iterations=1)
cands = spec["candidates"]
def one(c, config):
    return ev.evaluate_model(c["path"], c["format"], spec["dataset"], config, c["name"])
def timed(config, n):
    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        records = list(pool.map(lambda c: one(c, config), cands))
    return time.perf_counter() - start, records
one(cands[0], quick)  # warm: TensorFlow's first graph and kernels, the dataset's files
out = {}
for key, config, n in (("sequential", full, 1), ("accuracy_sequential", quick, 1),
                       ("accuracy_parallel", quick, workers), ("whole_parallel", full, workers),
                       ("sequential_again", full, 1)):
    seconds, records = timed(config, n)
    out[key] = {"seconds": seconds, "p50": {r["name"]: r["latency_ms_p50"] for r in records},
                "accuracy": {r["name"]: r["accuracy"] for r in records}}
print("RESULT " + json.dumps(out))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="", help="output dir of an earlier `tfopt run`")
    parser.add_argument("--workers", type=int, default=2, help="candidates at once (default 2)")
    parser.add_argument("--out", default="", help="also write the figures to this JSON file")
    parser.add_argument("extra", nargs="*", help="extra arguments for tfopt run")
    args = parser.parse_args()
    found = run_spec(args.run_dir, args.extra)
    if found is None:
        return 1
    _, spec = found
    r = worker_result(WORKER, json.dumps(spec), str(args.workers))
    seq, acc_seq, acc_par = (r[k]["seconds"] for k in ("sequential", "accuracy_sequential",
                                                        "accuracy_parallel"))  # fmt: skip
    latency = seq - acc_seq
    print(f"cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.2f}  "
          f"candidates: {len(spec['candidates'])}  workers: {args.workers}")  # fmt: skip
    for key in ("sequential", "accuracy_sequential", "accuracy_parallel", "whole_parallel",
                "sequential_again"):  # fmt: skip
        print(f"{key:<22} {r[key]['seconds']:7.2f} s")
    print(f"accuracy {args.workers} at once, then latency alone: {acc_par + latency:.2f} s "
          f"({(acc_par + latency) / seq:.2f}x the sequential step)")  # fmt: skip
    same = r["sequential"]["accuracy"] == r["whole_parallel"]["accuracy"]
    print(f"accuracies identical at once and in sequence: {same}")
    print(f"{'variant':<16} {'p50 seq':>9} {'p50 again':>9} {'p50 at once':>11} {'ratio':>6}")
    for name, p50 in r["sequential"]["p50"].items():
        again, both = r["sequential_again"]["p50"][name], r["whole_parallel"]["p50"][name]
        print(f"{name:<16} {p50:9.4f} {again:9.4f} {both:11.4f} {both / p50:6.2f}")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"workers": args.workers, **r}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
