"""Make a small replay fixture from a real local run's ``logs/run.log``.

``run.log`` holds every line RunLog saw, in order (kfp's records and the
steps' output). This keeps them all except the executor-input JSON kfp dumps
for each step, and cuts each step's own output to its first and last lines.

    .venv/bin/tfopt run --cold --parallelism 1 --output-dir /tmp/run   # cold: start-up lines
    .venv/bin/python tests/unit/data/trim_kfp_log.py /tmp/run/logs/run.log > \
        tests/unit/data/kfp_run_default.log

``kfp_run_failed_ingest.log`` keeps whole step outputs (``--keep 1000``), from a run on
a CSV with a non-numeric feature (line 19), ``--set arch=mlp``.
"""

import re
import sys

KEEP = 6  # of each step's own output, at each end
EVENT = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} - |^-+$|^Task |^Skipping |^Cleaned up ")


def trim(lines: list[str], keep: int = KEEP) -> list[str]:
    out: list[str] = []
    block: list[str] = []
    in_json = False

    def flush() -> None:
        out.extend(block if len(block) <= 2 * keep else block[:keep] + block[-keep:])
        block.clear()

    for line in lines:
        if in_json:
            in_json = line.rstrip() != "    }"
            continue
        if line.rstrip().endswith("Got executor_input:"):
            in_json = True
        if EVENT.match(line):
            flush()
            out.append(line)
        else:
            block.append(line)
    flush()
    return out


if __name__ == "__main__":
    keep = int(sys.argv[sys.argv.index("--keep") + 1]) if "--keep" in sys.argv else KEEP
    with open(sys.argv[1]) as fh:
        sys.stdout.writelines(trim(fh.readlines(), keep))
