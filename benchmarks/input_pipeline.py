"""Input pipeline: training examples per second, tf.data pipeline vs naive NumPy feeding.

The same model (tiny MLP) and the same data (``builtin:synthetic``, 8x8x1,
10x the digits size) are trained one epoch to warm up and ``--epochs``
timed epochs, three ways, in one run:

* ``tf.data``: ``tfopt.data.make_dataset`` (interleave, parallel parse,
  cache, seeded shuffle, batch, prefetch) into ``model.fit``;
* ``naive``: NumPy arrays shuffled in Python and fed batch by batch with
  ``model.train_on_batch`` (the hand-written loop the pipeline replaces);
* ``fit(numpy)``: the whole split as in-memory NumPy arrays into ``model.fit``
  (needs the split in memory; shown for reference).

    .venv/bin/python benchmarks/input_pipeline.py
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=17970)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    from tfopt._keras import keras
    from tfopt.data import ingest, input_pipeline
    from tfopt.training import models

    info = ingest.ingest(
        tempfile.mkdtemp(prefix="tfopt-pipe-") + "/d",
        ingest.IngestConfig(
            source="builtin:synthetic", synthetic_examples=args.examples, shard_size=4000
        ),
    )
    n = info.counts["train"]

    def new_model():
        keras.utils.set_random_seed(0)
        model = models.build_model(
            models.ModelConfig(arch="mlp", width=64, depth=2),
            info.feature_shape,
            info.num_classes,
            8.0,
            16.0,
        )
        model.compile("adam", "sparse_categorical_crossentropy")
        return model

    def timed(run_epoch) -> float:
        run_epoch()  # warm-up: tracing, cache fill
        start = time.perf_counter()
        for _ in range(args.epochs):
            run_epoch()
        return n * args.epochs / (time.perf_counter() - start)

    results = {}
    model = new_model()
    ds = input_pipeline.make_dataset(
        info, "train", input_pipeline.InputConfig(batch_size=args.batch_size, shuffle=True)
    )
    results["tf.data"] = timed(lambda: model.fit(ds, epochs=1, verbose=0))

    model = new_model()
    x, y = input_pipeline.load_arrays(info, "train")
    rng = np.random.default_rng(0)

    def naive_epoch():
        order = rng.permutation(n)
        for i in range(0, n, args.batch_size):
            idx = order[i : i + args.batch_size]
            model.train_on_batch(x[idx], y[idx])

    results["naive"] = timed(naive_epoch)
    model = new_model()
    results["fit(numpy)"] = timed(
        lambda: model.fit(x, y, batch_size=args.batch_size, epochs=1, shuffle=True, verbose=0)
    )
    print(f"train examples: {n}, batch {args.batch_size}, timed epochs {args.epochs}")
    for name, rate in results.items():
        print(f"{name:<11} {rate:>9.0f} examples/s")
    print(f"tf.data / naive:      {results['tf.data'] / results['naive']:.2f}x")
    print(f"tf.data / fit(numpy): {results['tf.data'] / results['fit(numpy)']:.2f}x")


if __name__ == "__main__":
    main()
