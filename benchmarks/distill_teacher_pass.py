"""Distillation with the teacher's outputs taken once against a teacher pass in every step.

    .venv/bin/python benchmarks/distill_teacher_pass.py [--max-examples 0] [--widths 2,8,24]
        [--epochs 3] [--rounds 1] [--out results.json]

Ingests builtin:fashion_mnist (all of it by default), trains the default ``cnn`` teacher
for two epochs (its accuracy does not matter to the timing), then, side by side in turns
(``--rounds``), distils each student width for ``--epochs`` epochs both ways:
``per_step`` (``transfer_set.OUTPUTS_LIMIT_BYTES = 0``: the teacher runs in every training
step, as before) and ``once`` (its outputs taken in one pass first; the seconds include that
pass, as a search's first trial pays it). Also the pass alone, which later trials and the
search's final student reuse. Prints a Markdown table; ``--out`` keeps JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from tfopt.compression import distill, transfer_set
from tfopt.data import ingest
from tfopt.training import train

LIMIT = transfer_set.OUTPUTS_LIMIT_BYTES


def distil(teacher: str, data: str, out: str, width: int, epochs: int, once: bool) -> dict:
    transfer_set.OUTPUTS_LIMIT_BYTES = LIMIT if once else 0
    transfer_set._outputs.clear()  # the first trial's cost: the pass included
    config = distill.DistillConfig(student_width=width, epochs=epochs)
    t0 = time.monotonic()
    r = distill.distill_model(teacher, data, out, config)
    return {"seconds": time.monotonic() - t0, "accuracy": r.distilled_accuracy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=0)
    parser.add_argument("--widths", default="2,8,24")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    with tempfile.TemporaryDirectory(prefix="tfopt-bench-") as tmp:
        data, teacher = os.path.join(tmp, "data"), os.path.join(tmp, "teacher")
        ingest.ingest(
            data,
            ingest.IngestConfig(source="builtin:fashion_mnist", max_examples=args.max_examples),
        )
        train.train_model(data, teacher, train.TrainConfig(epochs=2, early_stopping_patience=0))
        rows: dict = {w: {"per_step": [], "once": []} for w in widths}
        for _ in range(args.rounds):
            for w in widths:
                for way in ("per_step", "once"):
                    out = os.path.join(tmp, f"s{w}{way}")
                    rows[w][way].append(distil(teacher, data, out, w, args.epochs, way == "once"))
        transfer_set.OUTPUTS_LIMIT_BYTES = LIMIT
        t0 = time.monotonic()
        info = distill.schema.load_info(data)
        stored = transfer_set.make(info, 1.0, 0, "")
        model = distill.logits_model(distill.models.load_model(teacher))
        transfer_set.teacher_outputs(stored, model)
        pass_s = time.monotonic() - t0
    print(f"teacher pass alone: {pass_s:.1f} s ({stored.count} examples)\n")
    print("| width | per step (s) | once (s) | once / per step | saved an epoch | accuracy |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for w, ways in rows.items():
        a, b = (float(np.median([r["seconds"] for r in ways[k]])) for k in ("per_step", "once"))
        acc = " / ".join(f"{ways[k][-1]['accuracy'] * 100:.2f}" for k in ("per_step", "once"))
        saved = (a - b) / args.epochs  # the one pass included (a search pays it once)
        print(f"| {w} | {a:.1f} | {b:.1f} | {b / a:.2f}x | {saved:.1f} s | {acc} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"pass_seconds": pass_s, "rows": rows, "args": vars(args)}, f, indent=1)


if __name__ == "__main__":
    main()
