"""Hostile inputs to ``tfopt run``: outcome, seconds until the error, and what was written.

Each case runs ``tfopt run`` in a fresh process with a fresh ``--output-dir``
and records the exit status, the wall time until it exited, the last line of
stderr (the error people see) and how many files the run left under its output
directory. Prints a Markdown table (the one in ``docs/reliability.md``).

    .venv/bin/python benchmarks/hostile_inputs.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from sklearn.datasets import load_diabetes, load_iris

_MAIN = "import sys; from tfopt.cli import main; sys.exit(main())"


def _csv(path: str, x, y) -> str:
    cols = [f"f{i}" for i in range(x.shape[1])]
    with open(path, "w") as fh:
        fh.write(",".join([*cols, "label"]) + "\n")
        for row, t in zip(x, y, strict=True):
            fh.write(",".join([*(f"{v:.6g}" for v in row), str(int(t))]) + "\n")
    return path


def cases(tmp: str) -> list[tuple[str, list[str]]]:
    """(name, ``tfopt run`` arguments) of every hostile input."""
    binary = os.path.join(tmp, "params.yaml")
    with open(binary, "wb") as fh:
        fh.write(os.urandom(256) + b"\x00\xff")
    empty = os.path.join(tmp, "empty.yaml")
    open(empty, "w").close()
    dup = os.path.join(tmp, "dup.yaml")
    with open(dup, "w") as fh:
        fh.write("epochs: 3\nseed: 1\nepochs: 5\n")
    bin_csv = os.path.join(tmp, "binary.csv")
    with open(bin_csv, "wb") as fh:
        fh.write(os.urandom(4096))
    xi, yi = load_iris(return_X_y=True)
    iris = _csv(os.path.join(tmp, "iris.csv"), xi, yi)
    yi7 = yi.copy()
    yi7[40] = 7
    iris7 = _csv(os.path.join(tmp, "iris7.csv"), xi, yi7)
    xd, yd = load_diabetes(return_X_y=True)
    diabetes = _csv(os.path.join(tmp, "diabetes.csv"), xd, yd)
    return [
        ("objective=banana", ["--set", "objective=banana"]),
        ("target_sparsity=1.5", ["--set", "target_sparsity=1.5"]),
        (
            "target_sparsity=1.5, pruning off",
            ["--set", "target_sparsity=1.5", "--set", "enable_pruning=false"],
        ),
        ("epochs=-1", ["--set", "epochs=-1"]),
        ("num_classes=-3", ["--set", "num_classes=-3"]),
        ("unknown parameter", ["--set", "epochz=3"]),
        ("wrong type (epochs=three)", ["--set", "epochs=three"]),
        ("binary params file", ["--params", binary]),
        ("empty params file", ["--params", empty]),
        ("duplicate key in params", ["--params", dup]),
        ("missing source file", ["--set", f"source={tmp}/nope.csv"]),
        ("binary .csv source", ["--set", f"source={bin_csv}", "--set", "arch=mlp"]),
        ("gs:// source, no network", ["--set", "source=gs://no-such-bucket-tfopt/x.csv"]),
        ("flat CSV with default arch=cnn", ["--set", f"source={iris}"]),
        ("label 7 in 3-class CSV", ["--set", f"source={iris7}", "--set", "arch=mlp"]),
        (
            "label 7, num_classes=3",
            ["--set", f"source={iris7}", "--set", "arch=mlp", "--set", "num_classes=3"],
        ),
        ("continuous target (diabetes)", ["--set", f"source={diabetes}", "--set", "arch=mlp"]),
        ("deploy_target=vertex, no project", ["--set", "deploy_target=vertex"]),
    ]


def run_case(args: list[str], out: str, timeout: float) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _MAIN, "run", "--output-dir", out, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        rc, err = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired:
        rc, err = None, "timed out"
    seconds = time.perf_counter() - start
    lines = [line for line in err.splitlines() if line.strip()]
    written = sum(len(files) for _, _, files in os.walk(out)) if os.path.exists(out) else 0
    return {"rc": rc, "seconds": seconds, "last": lines[-1] if lines else "", "written": written}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tfopt-hostile-") as tmp:
        print("| input | outcome | seconds to the error | files written | message (last line) |")
        print("|---|---|---:|---:|---|")
        for i, (name, run_args) in enumerate(cases(tmp)):
            if args.only and name not in args.only:
                continue
            r = run_case(run_args, os.path.join(tmp, f"out{i}"), args.timeout)
            outcome = {0: "ran (no error)", 2: "clear error (exit 2)", None: "timed out"}.get(
                r["rc"], f"exit {r['rc']}"
            )
            msg = r["last"].replace("|", "\\|")
            if len(msg) > 160:
                msg = msg[:157] + "..."
            print(f"| {name} | {outcome} | {r['seconds']:.1f} | {r['written']} | {msg} |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
