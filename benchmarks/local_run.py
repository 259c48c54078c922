"""Wall time, peak memory and the headline figures of the default local run.

Runs ``tfopt run`` (the optimize pipeline on builtin:digits with default
parameters) in a subprocess, samples the RSS of the whole process tree (the
runner and every step it starts) every 100 ms, then reads summary.json.

    .venv/bin/python benchmarks/local_run.py [--output-dir runs/bench] [-- --set epochs=5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import psutil


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", default="")
    parser.add_argument("extra", nargs="*", help="extra arguments for tfopt run")
    args = parser.parse_args()
    out = args.output_dir or tempfile.mkdtemp(prefix="tfopt-bench-")
    tfopt = os.path.join(os.path.dirname(sys.executable), "tfopt")
    start = time.perf_counter()
    proc = subprocess.Popen(
        [tfopt, "run", "--output-dir", out, *args.extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(ps))
        time.sleep(0.1)
    wall = time.perf_counter() - start
    if proc.returncode:
        print(f"tfopt run failed with exit code {proc.returncode}", file=sys.stderr)
        return 1
    with open(os.path.join(out, "summary.json")) as fh:
        summary = json.load(fh)
    by = {v["name"]: v for v in summary["variants"]}
    base, f32, i8 = by["baseline"], by.get("tflite_float32"), by.get("tflite_int8")
    print(f"cores: {os.cpu_count()}")
    print(f"wall time (whole run, incl. process start-ups): {wall:.1f} s")
    print(f"peak RSS of the process tree: {peak / 2**30:.2f} GiB")
    print(f"variants: {len(summary['variants'])}  selected: {summary.get('selected')}")
    print(f"float baseline test accuracy: {base['accuracy'] * 100:.2f}%")
    if f32 and i8:
        print(
            f"int8 / float32 TFLite size: {i8['size_bytes'] / f32['size_bytes'] * 100:.1f}% "
            f"({i8['size_bytes']} / {f32['size_bytes']} bytes)"
        )
        print(
            f"int8 accuracy drop vs float TFLite: "
            f"{(f32['accuracy'] - i8['accuracy']) * 100:.2f} points"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
