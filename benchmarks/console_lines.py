"""How many lines ``tfopt run`` prints (stdout + stderr, off a terminal) and of what kind.

Runs ``tfopt run`` on a fresh output directory, like ``make run 2>&1 | wc -l``,
and counts the console's lines: progress lines (``[k/N] step ...``), TensorFlow /
CUDA start-up lines, and the rest; and the lines kept in ``DIR/logs/run.log``.

    .venv/bin/python benchmarks/console_lines.py [-- -v | --set epochs=5 ...]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

from tfopt.client.console import is_startup_noise

PROGRESS = re.compile(r"^\[\s*\d+(?:-\d+)?/\d+\] ")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extra", nargs="*", help="extra arguments for tfopt run")
    args = parser.parse_args()
    out = tempfile.mkdtemp(prefix="tfopt-console-")
    tfopt = os.path.join(os.path.dirname(sys.executable), "tfopt")
    start = time.perf_counter()
    proc = subprocess.run(
        [tfopt, "run", "--output-dir", out, *args.extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    lines = proc.stdout.splitlines()
    with open(os.path.join(out, "logs", "run.log")) as fh:
        logged = sum(1 for _ in fh)
    print(f"exit status      {proc.returncode}   ({time.perf_counter() - start:.1f} s)")
    print(f"console lines    {len(lines)}")
    print(f"  progress       {sum(1 for line in lines if PROGRESS.match(line))}")
    print(f"  start-up noise {sum(1 for line in lines if is_startup_noise(line.strip()))}")
    print(f"run.log lines    {logged}   ({out}/logs)")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
