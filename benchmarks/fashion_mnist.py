"""Fashion-MNIST with the pipeline's defaults: baseline accuracy, int8 drop, training time.

    .venv/bin/python benchmarks/fashion_mnist.py [--out fashion.json] [--time-variants]
        [--max-examples N --epochs E]   (a quick check; the recorded figures use neither)

Needs Debian's ``dataset-fashion-mnist`` (``make fashion-mnist``). Ingests
``builtin:fashion_mnist`` in full (54,000 train, 6,000 validation, 10,000 test), trains
the default model with the default ``TrainConfig`` through ``train.train_model``
(early stopping on val_loss, best weights restored), converts it to int8 with the
default ``TFLiteConfig`` and predicts all 10,000 test images with both. Prints
accuracy, the int8 drop, training wall time and examples/s, and per epoch the
validation accuracy with the time into training at which the epoch ended (from the
TensorBoard scalars' wall times). ``--time-variants`` also times one epoch of
pruning and of distillation with their defaults, to size a whole default run.
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import tempfile
import time

import numpy as np

from tfopt import fsutil
from tfopt.compression import distill, prune
from tfopt.compression import tflite as tflite_lib
from tfopt.data import ingest, input_pipeline
from tfopt.evaluation import runtime
from tfopt.training import train


def epoch_end_times(board: str) -> list[float]:
    """Wall time of each epoch's end (TensorBoard ``epoch_loss`` events of the train run)."""
    from tensorboard.backend.event_processing import event_accumulator

    files = sorted(glob.glob(os.path.join(board, "train", "events.out.tfevents.*")))
    acc = event_accumulator.EventAccumulator(files[-1], size_guidance={"tensors": 0})
    acc.Reload()
    return [e.wall_time for e in acc.Tensors("epoch_loss")]


def accuracy(path: str, fmt: str, x: np.ndarray, y: np.ndarray) -> float:
    probs = runtime.Predictor(path, fmt, num_threads=2).predict(x)
    return float((probs.argmax(axis=1) == y).mean())


def time_variants(root: str, ds: str, base: str) -> dict:
    """Seconds for one epoch of pruning and of distillation (defaults otherwise)."""
    out = {}
    t = time.perf_counter()
    prune.prune_model(base, ds, os.path.join(root, "pruned"), prune.PruneConfig(epochs=1))
    out["prune_1_epoch_s"] = time.perf_counter() - t
    t = time.perf_counter()
    config = distill.DistillConfig(epochs=1, train_scratch=True)
    distill.distill_model(base, ds, os.path.join(root, "student"), config)
    out["distill_1_epoch_s (distilled + scratch student)"] = time.perf_counter() - t
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="", help="also write the figures as JSON here")
    parser.add_argument("--max-examples", type=int, default=0, help="stratified subset (0 = all)")
    parser.add_argument("--epochs", type=int, default=0, help="0 = TrainConfig's default")
    parser.add_argument("--time-variants", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = tempfile.mkdtemp(prefix="tfopt-bench-fashion-")
    ds = os.path.join(root, "fashion")
    t = time.perf_counter()
    info = ingest.ingest(
        ds, ingest.IngestConfig(source="builtin:fashion_mnist", max_examples=args.max_examples)
    )
    ingest_s = time.perf_counter() - t
    config = train.TrainConfig(**({"epochs": args.epochs} if args.epochs else {}))
    base, board = os.path.join(root, "baseline"), os.path.join(root, "board")
    load_before = os.getloadavg()
    t0 = time.time()
    result = train.train_model(ds, base, config, tensorboard_dir=board)
    train_s = time.time() - t0
    load_after = os.getloadavg()
    int8 = os.path.join(root, "int8.tflite")
    t = time.perf_counter()
    quant = tflite_lib.convert_to_tflite(
        base, ds, int8, tflite_lib.TFLiteConfig(max_accuracy_drop=-1.0)
    )
    convert_s = time.perf_counter() - t
    x, y = input_pipeline.load_arrays(info, "test")
    base_acc, int8_acc = accuracy(base, "saved_model", x, y), accuracy(int8, "tflite", x, y)
    ends = epoch_end_times(board)
    figures = {
        "counts": info.counts,
        "model": f"{config.model.arch} width {config.model.width} depth {config.model.depth}",
        "params": result.params,
        "ingest_s": round(ingest_s, 2),
        "epochs_run": result.epochs_run,
        "train_wall_s": round(train_s, 1),
        "train_examples_per_s": round(result.metrics["examples_per_second"], 1),
        "load_avg_1m_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "per_epoch": [
            {
                "epoch": i + 1,
                "s_into_training": round(end - t0, 1),
                "val_loss": round(loss, 4),
                "val_accuracy": round(acc, 4),
            }
            for i, (end, loss, acc) in enumerate(
                zip(ends, result.history["val_loss"], result.history["val_accuracy"], strict=False)
            )
        ],
        "int8_mode": quant.mode,
        "int8_convert_s": round(convert_s, 1),
        "test_examples": len(y),
        "baseline_test_accuracy": round(base_acc * 100, 2),
        "int8_test_accuracy": round(int8_acc * 100, 2),
        "int8_drop_points": round((base_acc - int8_acc) * 100, 2),
        "saved_model_bytes": fsutil.size_bytes(base),
        "int8_bytes": quant.size_bytes,
    }
    if args.time_variants:
        figures.update({k: round(v, 1) for k, v in time_variants(root, ds, base).items()})
    text = json.dumps(figures, indent=2)
    print(text)
    if args.out:
        with fsutil.atomic_file(args.out) as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
