"""Structured pruning to a latency target on real data (issue 31): what the bisection on
measured time chose, and the p50 taken again in fresh processes.

    .venv/bin/python benchmarks/channel_latency.py [--targets 0.8,0.6] [--epochs 3]
        [--max-examples 0] [--out results.json]

Ingests builtin:fashion_mnist (all of it by default), trains the default ``cnn`` through
the library to early stopping, then per target runs ``channel_prune_model`` with
``latency_target`` (fine-tuned ``--epochs``) and reports: the keep ratio and FLOPs removed
it chose, the ratio it measured while choosing, the SavedModel's batch-1 p50 against the
baseline's at 1 and 2 TensorFlow threads (each in a fresh process, as
``structured_pruning.py`` takes them) and the test accuracies. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import numpy as np
from structured_pruning import accuracy, saved_model_p50

from tfopt.compression import channel_prune as cp
from tfopt.data import ingest, input_pipeline, schema
from tfopt.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", default="0.8,0.6")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-examples", type=int, default=0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfopt-bench-") as tmp:
        data, base = os.path.join(tmp, "data"), os.path.join(tmp, "base")
        source = ingest.IngestConfig(source="builtin:fashion_mnist", max_examples=args.max_examples)
        ingest.ingest(data, source)
        train.train_model(data, base, train.TrainConfig())
        info = schema.load_info(data)
        x, y = input_pipeline.load_arrays(info, "test")
        x_file = os.path.join(tmp, "x.npy")
        np.save(x_file, x[:64])
        base_p50 = {t: saved_model_p50(base, t, x_file) for t in (1, 2)}
        rows = []
        for target in (float(t) for t in args.targets.split(",")):
            out = os.path.join(tmp, f"pruned-{target}")
            config = cp.ChannelPruneConfig(latency_target=target, epochs=args.epochs)
            r = cp.channel_prune_model(base, data, out, config)
            p50 = {t: saved_model_p50(out, t, x_file) for t in (1, 2)}
            rows.append({
                "target": target, "keep_ratio": r.keep_ratio, "flops_removed": r.flops_removed,
                "measured": r.latency_ratio, "note": r.notes[0],
                "p50_1": p50[1] / base_p50[1], "p50_2": p50[2] / base_p50[2],
                "accuracy": accuracy(out, "saved_model", x, y),
                "params": r.params_after,
            })  # fmt: skip
        base_acc = accuracy(base, "saved_model", x, y)
    print(f"baseline: {base_acc:.2f}%, p50 {base_p50[1]:.3f} ms (1 thread), "
          f"{base_p50[2]:.3f} ms (2 threads)\n")  # fmt: skip
    print("| target | keep ratio | FLOPs out | measured while choosing | p50 1 / 2 threads | "
          "accuracy |")  # fmt: skip
    print("| ---: | ---: | ---: | ---: | --- | ---: |")
    for r in rows:
        print(f"| {r['target']:g} | {r['keep_ratio']:.3f} | {r['flops_removed']:.0%} | "
              f"{r['measured']:.2f}x | {r['p50_1']:.2f}x / {r['p50_2']:.2f}x | "
              f"{r['accuracy']:.2f}% |")  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"base_p50": base_p50, "base_accuracy": base_acc, "rows": rows}, f)


if __name__ == "__main__":
    main()
