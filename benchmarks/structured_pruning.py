"""Structured pruning on real families (issue 31): FLOPs out against latency gained.

    .venv/bin/python benchmarks/structured_pruning.py [--families mobilenet_v2:0.35,...]
        [--max-examples 14000] [--epochs 20] [--fractions 0.3,0.5,0.7] [--prune-epochs 4]
        [--out results.json]

Per family (``arch:alpha``; tf_keras.applications with ``weights=None`` as the families
benchmark builds them) on a seeded stratified subset of builtin:fashion_mnist: trains the
baseline through the library (early stopping on the validation split), then for each
FLOPs fraction runs ``channel_prune_model`` (fine-tuned ``--prune-epochs``) and measures,
side by side in one run: test accuracy, parameters, FLOPs, the SavedModel's batch-1 p50
through tfopt's own runtime (``Predictor``) at 1 and 2 TensorFlow threads (each in a
process of its own: TensorFlow's thread pools are per process), and the int8 TFLite
child's p50 against the baseline's int8. Prints a Markdown table; ``--out`` keeps JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from tfopt.compression import channel_prune as cp
from tfopt.compression import tflite as tflite_lib
from tfopt.data import ingest, input_pipeline
from tfopt.evaluation.evaluate import EvalConfig, latency_ms
from tfopt.evaluation.runtime import Predictor
from tfopt.training import models, train

# p50 of a SavedModel in a fresh process with the given TensorFlow threads
_P50 = """
import json, sys
import numpy as np
from tfopt.evaluation.evaluate import EvalConfig, latency_ms
from tfopt.evaluation.runtime import Predictor
x = np.load(sys.argv[2])
config = EvalConfig(latency_iterations=300, latency_min_seconds=1.0)
print(json.dumps(float(np.median(latency_ms(Predictor(sys.argv[1], "saved_model"), x, config)))))
"""


def saved_model_p50(path: str, threads: int, x_file: str) -> float:
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads),
           "TF_NUM_INTEROP_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "3"}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", _P50, path, x_file], env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def tflite_p50(path: str, x) -> float:
    config = EvalConfig(latency_iterations=300, num_threads=1)
    return float(np.median(latency_ms(Predictor(path, "tflite", num_threads=1), x, config)))


def accuracy(path: str, fmt: str, x, y) -> float:
    return float(np.mean(Predictor(path, fmt).predict(x).argmax(1) == y) * 100)


def measure(path: str, ds: str, x, y, x_file: str) -> dict:
    i8 = path + "-int8.tflite"
    tflite_lib.convert_to_tflite(
        path, ds, i8, tflite_lib.TFLiteConfig(mode="int8", max_accuracy_drop=-1.0)
    )
    return {
        "accuracy": accuracy(path, "saved_model", x, y),
        "params": models.count_params(models.load_model(path)),
        "p50_ms_1_thread": saved_model_p50(path, 1, x_file),
        "p50_ms_2_threads": saved_model_p50(path, 2, x_file),
        "int8_p50_ms": tflite_p50(i8, x),
        "int8_accuracy": accuracy(i8, "tflite", x, y),
    }


def family(spec: str, ds: str, root: str, args, x, y, x_file: str) -> dict:
    arch, _, alpha = spec.partition(":")
    start = time.perf_counter()
    base = os.path.join(root, spec.replace(":", "-"))
    config = models.ModelConfig(arch=arch, alpha=float(alpha or 1.0))
    trained = train.train_model(ds, base, train.TrainConfig(model=config, epochs=args.epochs))
    r: dict = {"family": spec, "epochs_run": trained.epochs_run,
               "train_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    r["baseline"] = measure(base, ds, x, y, x_file)
    r["pruned"] = {}
    for fraction in (float(f) for f in args.fractions.split(",")):
        out = f"{base}-cp{fraction}"
        t0 = time.perf_counter()
        res = cp.channel_prune_model(
            base, ds, out, cp.ChannelPruneConfig(flops_fraction=fraction, epochs=args.prune_epochs)
        )
        r["pruned"][str(fraction)] = {
            **measure(out, ds, x, y, x_file),
            "flops_removed": res.flops_removed,
            "flops_before": res.flops_before,
            "flops_after": res.flops_after,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="mobilenet_v2:0.35,mobilenet_v2:1.0,resnet50")
    parser.add_argument("--max-examples", type=int, default=14000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--fractions", default="0.3,0.5,0.7")
    parser.add_argument("--prune-epochs", type=int, default=4)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="tfopt-bench-structured-")
    ds = os.path.join(root, "fashion")
    info = ingest.ingest(
        ds, ingest.IngestConfig(source="builtin:fashion_mnist", max_examples=args.max_examples)
    )
    x, y = input_pipeline.load_arrays(info, "test")
    x_file = os.path.join(root, "x.npy")
    np.save(x_file, x[:64])
    print(f"Fashion-MNIST subset {info.counts}, load {os.getloadavg()}", flush=True)
    rows = []
    for spec in args.families.split(","):
        rows.append(family(spec, ds, root, args, x, y, x_file))
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(rows, fh, indent=1)
    print(
        "\n| family | FLOPs out | accuracy (drop) | params | SavedModel p50 ms 1 / 2 threads "
        "(x baseline) | int8 p50 ms (x baseline int8) |\n|---|---:|---|---:|---|---|"
    )
    for r in rows:
        b = r["baseline"]
        print(
            f"| {r['family']} | 0 | {b['accuracy']:.2f} | {b['params']:,} | "
            f"{b['p50_ms_1_thread']:.3f} / {b['p50_ms_2_threads']:.3f} | {b['int8_p50_ms']:.3f} |"
        )
        for fraction, p in r["pruned"].items():
            print(
                f"| | {p['flops_removed']:.0%} ({fraction}) | {p['accuracy']:.2f} "
                f"({b['accuracy'] - p['accuracy']:+.2f}) | {p['params']:,} | "
                f"{p['p50_ms_1_thread']:.3f} / {p['p50_ms_2_threads']:.3f} "
                f"({p['p50_ms_1_thread'] / b['p50_ms_1_thread']:.2f}x / "
                f"{p['p50_ms_2_threads'] / b['p50_ms_2_threads']:.2f}x) | "
                f"{p['int8_p50_ms']:.3f} ({p['int8_p50_ms'] / b['int8_p50_ms']:.2f}x) |"
            )


if __name__ == "__main__":
    main()
