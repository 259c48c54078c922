"""Architecture families on Fashion-MNIST: TFLite sizes, XNNPACK latency, compression drops.

    .venv/bin/python benchmarks/families.py [--families mobilenet_v2,resnet50]
        [--max-examples 14000] [--epochs 3] [--qat-epochs 1] [--prune-epochs N] [--out F]

Per family (tf_keras.applications, ``weights=None``, the 28x28x1 input adapted inside
the model): trains the baseline through the library on a seeded stratified subset of
builtin:fashion_mnist, then records the float32 / dynamic / float16 / int8 TFLite
sizes; batch-1 p50 latency with XNNPACK at 1 and 2 threads, int8 against float32 in
the same run; the accuracy drop of int8, QAT int8 and pruning at 50% and 80% + int8;
and what the pre-flight report (compression.inspect) said would be covered against
what the techniques measured they covered.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time

import numpy as np

from tfopt.compression import inspect, prune, qat
from tfopt.compression import tflite as tflite_lib
from tfopt.data import ingest, input_pipeline
from tfopt.evaluation.evaluate import EvalConfig, latency_ms
from tfopt.evaluation.runtime import Predictor
from tfopt.training import models, train

ALPHA = {"mobilenet_v2": 0.35, "mobilenet_v3_small": 0.75}


def accuracy(path: str, fmt: str, x, y) -> float:
    return float(np.mean(Predictor(path, fmt).predict(x).argmax(1) == y) * 100)


def p50_ms(path: str, threads: int, x) -> float:
    config = EvalConfig(latency_iterations=200, num_threads=threads)
    return float(np.median(latency_ms(Predictor(path, "tflite", num_threads=threads), x, config)))


def int8(model_path: str, out: str, ds: str) -> str:
    tflite_lib.convert_to_tflite(
        model_path, ds, out, tflite_lib.TFLiteConfig(mode="int8", max_accuracy_drop=-1.0)
    )
    return out


def family(
    name: str, ds: str, root: str, epochs: int, x, y, qat_epochs: int = 1, prune_epochs: int = 1
) -> dict:
    """``epochs``: most epochs of the baseline (early stopping may end it sooner)."""
    start = time.perf_counter()
    base = os.path.join(root, name)
    model = models.ModelConfig(arch=name, alpha=ALPHA.get(name, 1.0))
    trained = train.train_model(ds, base, train.TrainConfig(model=model, epochs=epochs))
    r: dict = {"family": name, "alpha": model.alpha, "params": trained.params}
    r["train_seconds"] = round(time.perf_counter() - start, 1)
    r["epochs_run"] = trained.epochs_run
    r |= measure(name, base, ds, root, x, y, qat_epochs, prune_epochs)
    r["seconds"] = round(time.perf_counter() - start, 1)
    return r


def measure(
    name: str, base: str, ds: str, root: str, x, y, qat_epochs: int = 1, prune_epochs: int = 1
) -> dict:
    """Everything the table shows for the baseline SavedModel ``base`` (also
    benchmarks/keras3.py's, on an imported Keras 3 model)."""
    r: dict = {"qat_epochs": qat_epochs, "prune_epochs": prune_epochs}
    r["baseline"] = accuracy(base, "saved_model", x, y)
    sizes, acc = {}, {}
    for mode in tflite_lib.MODES:
        path = os.path.join(root, f"{name}-{mode}.tflite")
        tflite_lib.convert_to_tflite(
            base, ds, path, tflite_lib.TFLiteConfig(mode=mode, max_accuracy_drop=-1.0)
        )
        sizes[mode] = os.path.getsize(path)
        acc[mode] = accuracy(path, "tflite", x, y)
    r["tflite_bytes"], r["tflite_accuracy"] = sizes, acc
    r["int8_of_float32_size"] = sizes["int8"] / sizes["float32"]
    f32, i8 = (os.path.join(root, f"{name}-{m}.tflite") for m in ("float32", "int8"))
    for threads in (1, 2):
        a, b = p50_ms(f32, threads, x), p50_ms(i8, threads, x)
        r[f"p50_ms_{threads}_thread"] = {"float32": a, "int8": b, "int8_over_float32": b / a}
    report = inspect.inspect_model(base, convert=False)
    r["preflight"] = report["coverage"] | {"nested_models": report["nested_models"]}
    qp = os.path.join(root, f"{name}-qat.tflite")
    q = qat.qat_model(base, ds, qp, qat.QatConfig(epochs=qat_epochs))
    r["qat"] = {
        "accuracy": accuracy(qp, "tflite", x, y),
        "quantized_param_fraction": q.quantized_param_fraction,
    }
    r["pruned"] = {}
    for sparsity in (0.5, 0.8):
        pp = os.path.join(root, f"{name}-pruned-{sparsity}")
        res = prune.prune_model(
            base, ds, pp, prune.PruneConfig(target_sparsity=sparsity, epochs=prune_epochs)
        )
        pi8 = int8(pp, pp + "-int8.tflite", ds)
        r["pruned"][str(sparsity)] = {
            "accuracy_int8": accuracy(pi8, "tflite", x, y),
            "pruned_param_fraction": res.pruned_param_fraction,
            "sparsity": res.sparsity,
        }
    r["drops"] = {
        "int8": r["baseline"] - acc["int8"],
        "qat_int8": r["baseline"] - r["qat"]["accuracy"],
        **{f"pruned_{s}_int8": r["baseline"] - v["accuracy_int8"] for s, v in r["pruned"].items()},
    }
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="mobilenet_v2,resnet50")
    parser.add_argument("--max-examples", type=int, default=14000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--prune-epochs", type=int, default=0, help="default: epochs // 2")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = tempfile.mkdtemp(prefix="tfopt-bench-families-")
    ds = os.path.join(root, "fashion")
    info = ingest.ingest(
        ds, ingest.IngestConfig(source="builtin:fashion_mnist", max_examples=args.max_examples)
    )
    x, y = input_pipeline.load_arrays(info, "test")
    print(f"Fashion-MNIST subset: {info.counts} examples, {len(y)} test; load {os.getloadavg()}")
    rows = []
    for name in args.families.split(","):
        prune_epochs = args.prune_epochs or max(1, args.epochs // 2)
        r = family(name, ds, root, args.epochs, x, y, args.qat_epochs, prune_epochs)
        rows.append(r)
        print(json.dumps(r), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=1)
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print(
        "\n| family | params | baseline % | float32 / dynamic / float16 / int8 KB | int8 % of "
        "float | p50 ms fp32 -> int8 (1 thread) | (2 threads) | drop int8 / QAT / "
        "prune 50% / 80% + int8 (points) | prunable / pruned, QAT-able / quantized |"
    )
    print("| --- | ---: | ---: | --- | ---: | --- | --- | --- | --- |")
    for r in rows:
        kb = " / ".join(f"{r['tflite_bytes'][m] / 1024:.0f}" for m in tflite_lib.MODES)
        lat = [r[f"p50_ms_{t}_thread"] for t in (1, 2)]
        d = r["drops"]
        pf = r["preflight"]
        print(
            f"| {r['family']} (alpha {r['alpha']}) | {r['params']:,} | {r['baseline']:.2f} | "
            f"{kb} | {r['int8_of_float32_size'] * 100:.0f}% | "
            + " | ".join(
                f"{v['float32']:.2f} -> {v['int8']:.2f} ({v['int8_over_float32']:.2f}x)"
                for v in lat
            )
            + f" | {d['int8']:.2f} / {d['qat_int8']:.2f} / {d['pruned_0.5_int8']:.2f} / "
            f"{d['pruned_0.8_int8']:.2f} | {pf['prunable_param_fraction']:.3f} / "
            f"{r['pruned']['0.8']['pruned_param_fraction']:.3f}, {pf['qat_param_fraction']:.3f} / "
            f"{r['qat']['quantized_param_fraction']:.3f} |"
        )


if __name__ == "__main__":
    main()
