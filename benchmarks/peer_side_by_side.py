"""tfopt's local run against the TFX 1.21 peer, side by side, alternating (A B A B).

Each round runs, in this order: the default configuration (warm start), the peer, the
foundation configuration (warm start), the peer again, with ``--sequential`` both tfopt
configurations one step at a time (``--parallelism 1``, the run before issue 33), and with
``--cold`` both tfopt
configurations once more with every step in a fresh interpreter (the "before");
``--cached`` then times an unchanged re-run of the default configuration with ``--cache``. Every
run gets a fresh output directory; wall time and the peak memory (PSS) of the whole process
tree are measured from outside. Medians per configuration and the ratios to the peer
runs of the same rounds are printed as a Markdown table, with the cores each run used on
average (CPU seconds of its whole process tree over its wall time).

    .venv/bin/python benchmarks/peer_side_by_side.py --peer-venv /tmp/tfx-peer-venv \\
        [--peer-dir ../shared/peer_tfx] [--rounds 2] [--cold] [--cached]

The peer's set-up: ``../shared/peer_tfx/setup.sh /tmp/tfx-peer-venv`` (its README).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

FOUNDATION = [
    f"enable_{name}=false"
    for name in ("pruning", "distillation", "lowrank", "qat", "tflite_dynamic", "tflite_float16")
]


def tree_pss(proc: psutil.Process) -> int:
    """Proportional set size of ``proc`` and its descendants: pages shared between them
    (a warm run's forked steps share the parent's TensorFlow) are counted once, not per
    process as a sum of RSS would."""
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_full_info().pss
    return total


def measure(command: list[str], env: dict | None = None) -> tuple[float, int]:
    """Wall seconds and peak PSS (bytes) of ``command`` and every process it starts; its CPU
    seconds (user + system of the whole reaped tree, RUSAGE_CHILDREN) go to ``LAST_CPU``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    ps, peak = psutil.Process(proc.pid), 0
    while proc.poll() is None:
        peak = max(peak, tree_pss(ps))
        time.sleep(0.25)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{command[:3]} failed with exit code {proc.returncode}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    LAST_CPU[0] = cpu
    return wall, peak


LAST_CPU = [0.0]  # CPU seconds of the last measured command


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-venv", required=True)
    here = os.path.dirname(os.path.abspath(__file__))
    parser.add_argument("--peer-dir", default=os.path.join(here, "..", "..", "shared", "peer_tfx"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cold", action="store_true", help="also run tfopt without warm start")
    parser.add_argument(
        "--cached", action="store_true", help="then time an unchanged re-run with --cache"
    )
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="also run both tfopt configurations one step at a time (--parallelism 1)",
    )
    args = parser.parse_args()
    tfopt = os.path.join(os.path.dirname(sys.executable), "tfopt")
    peer = [
        os.path.join(args.peer_venv, "bin", "python"),
        os.path.join(args.peer_dir, "pipeline.py"),
    ]
    cold_env = {**os.environ, "TFOPT_WARM_START": "0"}

    last_default = ""

    def run_tfopt(sets: list[str], env=None, extra=()):
        nonlocal last_default
        out = tempfile.mkdtemp(prefix="tfopt-side-")
        if not sets:
            last_default = out
        flags = [f for s in sets for f in ("--set", s)]
        return measure([tfopt, "run", "--output-dir", out, *flags, *extra], env)

    def run_peer():
        return measure([*peer, "--work-dir", tempfile.mkdtemp(prefix="tfx-peer-")])

    plan = [
        ("tfopt default", lambda: run_tfopt([])),
        ("TFX peer", run_peer),
        ("tfopt foundation", lambda: run_tfopt(FOUNDATION)),
        ("TFX peer", run_peer),
    ]
    if args.sequential:
        one = ("--parallelism", "1")
        plan += [
            ("tfopt default, one step at a time", lambda: run_tfopt([], extra=one)),
            ("tfopt foundation, one step at a time", lambda: run_tfopt(FOUNDATION, extra=one)),
        ]
    if args.cold:
        plan += [
            ("tfopt default, cold", lambda: run_tfopt([], cold_env)),
            ("tfopt foundation, cold", lambda: run_tfopt(FOUNDATION, cold_env)),
        ]
    times: dict[str, list[float]] = {}
    peaks: dict[str, list[int]] = {}
    cores: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        for name, run in plan:
            wall, peak = run()
            times.setdefault(name, []).append(wall)
            peaks.setdefault(name, []).append(peak)
            cores.setdefault(name, []).append(LAST_CPU[0] / wall)
            load = os.getloadavg()[0]
            print(
                f"round {round_ + 1}: {name}: {wall:.1f} s, {peak / 2**30:.2f} GiB, "
                f"{LAST_CPU[0] / wall:.2f} cores, load {load:.2f}",
                flush=True,
            )
    if args.cached:  # the default configuration twice in one directory; the second is timed
        out = tempfile.mkdtemp(prefix="tfopt-cached-")
        measure([tfopt, "run", "--output-dir", out, "--cache"])
        wall, peak = measure([tfopt, "run", "--output-dir", out, "--cache"])
        name = "tfopt default, cached re-run"
        times[name], peaks[name], cores[name] = [wall], [peak], [LAST_CPU[0] / wall]
        print(f"cached re-run: {wall:.1f} s", flush=True)
    peer_median = statistics.median(times["TFX peer"])
    print("\n| run | wall (median) | runs | cores used (median) | peak PSS | / TFX peer |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    for name, walls in times.items():
        runs = ", ".join(f"{w:.1f}" for w in walls)
        ratio = statistics.median(walls) / peer_median
        print(
            f"| {name} | {statistics.median(walls):.1f} s | {runs} | "
            f"{statistics.median(cores[name]):.2f} | {max(peaks[name]) / 2**30:.2f} GiB | "
            f"{ratio:.2f}x |"
        )
    # the compression figures of the last default run, to set beside docs/benchmarks.md's
    with open(os.path.join(last_default, "summary.json")) as fh:
        summary = json.load(fh)
    print("\n| variant | format | accuracy % | size bytes | sparsity |")
    print("| --- | --- | ---: | ---: | --- |")
    for v in summary["variants"]:
        print(
            f"| {v['name']} | {v.get('format', '')} | {v.get('accuracy', 0) * 100:.2f} | "
            f"{v.get('size_bytes', '')} | {v.get('sparsity') or ''} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
