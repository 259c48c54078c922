"""A small random search on builtin:digits versus the default hyperparameters.

Searches ``--trials`` random trials over tfopt's default search space (each
trial at most ``--trial-epochs`` epochs), then trains the best
hyperparameters and the defaults (``TrainConfig()``) the same way
(``TrainConfig()``'s epochs and early stopping, same seed) and compares
their accuracy on the held-out test split.

    .venv/bin/python benchmarks/tune.py [--trials 6] [--trial-epochs 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time

import numpy as np

from tfopt.data import ingest, input_pipeline, schema
from tfopt.training import models, tune
from tfopt.training import train as train_lib


def test_accuracy(info: schema.DatasetInfo, model_path: str) -> float:
    x, y = input_pipeline.load_arrays(info, "test")
    probabilities = models.load_model(model_path).predict(x, batch_size=512, verbose=0)
    return float(np.mean(np.argmax(probabilities, axis=-1) == y))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--trial-epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", default="", help="also write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    work = tempfile.mkdtemp(prefix="tfopt-bench-tune-")
    dataset = os.path.join(work, "digits")
    info = ingest.ingest(dataset, ingest.IngestConfig(source="builtin:digits", seed=args.seed))

    config = tune.TuneConfig(
        algorithm="random",
        max_trials=args.trials,
        base=train_lib.TrainConfig(
            epochs=args.trial_epochs, early_stopping_patience=3, seed=args.seed
        ),
    )
    start = time.perf_counter()
    result = tune.tune(dataset, os.path.join(work, "search"), config)
    search_seconds = time.perf_counter() - start

    defaults = train_lib.TrainConfig(seed=args.seed)
    tuned = tune.train_config_from_hyperparameters(result.best_hyperparameters, defaults)
    figures = {
        "trials": len(result.trials),
        "trial_epochs": args.trial_epochs,
        "search_seconds": round(search_seconds, 1),
        "best_hyperparameters": result.best_hyperparameters,
        "best_val_accuracy": result.best_score,
    }
    for name, cfg in (("defaults", defaults), ("tuned", tuned)):
        start = time.perf_counter()
        trained = train_lib.train_model(dataset, os.path.join(work, name), cfg)
        figures[f"{name}_train_seconds"] = round(time.perf_counter() - start, 1)
        figures[f"{name}_epochs"] = trained.epochs_run
        figures[f"{name}_params"] = trained.params
        figures[f"{name}_test_accuracy"] = round(test_accuracy(info, trained.model_path), 4)
    print(result.to_markdown())
    print(json.dumps(figures, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(figures, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
