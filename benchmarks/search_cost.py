"""What the search costs: a run at fixed strengths and one with ``preset: real``, side by side.

    .venv/bin/python benchmarks/search_cost.py [--out search_cost.json] [-- --set source=...]

Runs ``tfopt run`` twice, one after the other on the same machine, with the same extra
arguments (default: ``builtin:fashion_mnist``, a 3,000-example stratified subset), the
second with ``--set preset=real``. From each run's console lines (``[ i/N] step ...
done X s``) it takes every step's seconds, and prints the run's wall time, the train
step's, their ratio (issue 32's cost: whole run over train step), the pick (size,
accuracy) and each searched technique's trials.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

from champion_overhead import run as timed_run  # `tfopt run`: wall time, summary, step seconds

DEFAULT = ["--set", "source=builtin:fashion_mnist", "--set", "max_examples=3000"]


def run(extra: list[str], out: str) -> dict:
    wall, summary, steps = timed_run(out, extra)
    by = {v["name"]: v for v in summary["variants"]}
    pick = by.get(summary.get("selected") or "", {})
    return {
        "wall_s": round(wall, 1),
        "train_s": steps.get("train"),
        "cost_x_train": round(wall / steps["train"], 2) if steps.get("train") else None,
        "steps_s": steps,
        "selected": summary.get("selected"),
        "selected_size_bytes": pick.get("size_bytes"),
        "selected_accuracy": pick.get("accuracy"),
        "baseline_accuracy": by["baseline"]["accuracy"],
        "searches": {
            v["name"]: {
                "knob": v["search"]["knob"],
                "chosen": v["search"]["chosen"],
                "trials": len(v["search"]["trials"]),
            }
            for v in summary["variants"]
            if v.get("search")
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="")
    parser.add_argument("extra", nargs="*", help="extra arguments for both tfopt runs")
    args = parser.parse_args()
    extra = args.extra or DEFAULT
    root = tempfile.mkdtemp(prefix="tfopt-search-cost-")
    result = {
        "args": extra,
        "fixed": run(extra, os.path.join(root, "fixed")),
        "preset_real": run([*extra, "--set", "preset=real"], os.path.join(root, "real")),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
