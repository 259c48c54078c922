"""LiteRT Quantizer recipes against the converter's int8 (default cnn, builtin:digits or other).

    .venv/bin/python benchmarks/litert_recipes.py [--out litert.json] [--rounds 100] [--mixed-db 30]
        [--source builtin:fashion_mnist --max-examples 20000 --epochs 5]

Trains the default baseline (cnn, ~151k params), exports a float32 ``.tflite``
with the converter, quantizes it with the converter (int8) and with every LiteRT
Quantizer recipe, and prints size, test accuracy and batch-1 latency under the
LiteRT interpreter (1 thread). Latency: the models take turns, ``--rounds`` rounds
of 50 calls each, so machine noise hits them alike; the median per-call time and
the ratio to the float model measured in the same run are reported. ``--mixed-db``
adds mixed-precision rows with stricter thresholds than the default 20 dB.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time

import numpy as np

from tfopt import fsutil
from tfopt.compression import litert_quantizer as lq
from tfopt.compression import tflite as tflite_lib
from tfopt.data import ingest, input_pipeline
from tfopt.evaluation import runtime
from tfopt.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="")
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--mixed-db", default="30", help="extra mixed thresholds (dB), comma list")
    parser.add_argument("--source", default="builtin:digits", help="e.g. builtin:fashion_mnist")
    parser.add_argument("--max-examples", type=int, default=0, help="seeded subset (0 = all)")
    parser.add_argument("--epochs", type=int, default=0, help="0 = TrainConfig's default")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    start = time.time()
    root = tempfile.mkdtemp(prefix="tfopt-bench-litert-")
    ds = os.path.join(root, "digits")
    info = ingest.ingest(
        ds, ingest.IngestConfig(source=args.source, max_examples=args.max_examples)
    )
    x, y = input_pipeline.load_arrays(info, "test")
    base = os.path.join(root, "baseline")
    epochs = {"epochs": args.epochs} if args.epochs else {}
    train.train_model(ds, base, train.TrainConfig(**epochs))
    paths, seconds, extra = {}, {}, {}
    for mode in ("float32", "int8"):
        paths[f"converter_{mode}"] = p = os.path.join(root, f"converter_{mode}.tflite")
        t = time.perf_counter()
        tflite_lib.convert_to_tflite(
            base, ds, p, tflite_lib.TFLiteConfig(mode=mode, max_accuracy_drop=-1.0)
        )
        seconds[f"converter_{mode}"] = time.perf_counter() - t
    runs = [(f"litert_{r}", lq.LiteRTQuantizeConfig(recipe=r)) for r in lq.RECIPES]
    runs += [
        (f"litert_mixed_{db:g}db", lq.LiteRTQuantizeConfig("mixed", mixed_min_snr_db=db))
        for db in (float(v) for v in args.mixed_db.split(",") if v)
    ]
    for name, config in runs:
        paths[name] = p = os.path.join(root, f"{name}.tflite")
        t = time.perf_counter()
        res = lq.quantize_tflite(paths["converter_float32"], ds, p, config)
        seconds[name] = time.perf_counter() - t
        worst = res.worst_tensors[0] if res.worst_tensors else {}
        extra[name] = {
            "types": res.tensor_types,
            "int8_ops": len(res.int8_ops),
            "float_ops": len(res.float_ops),
            "worst_snr_db": worst.get("snr_db"),
        }
    models = {n: runtime.Predictor(p, "tflite", num_threads=1) for n, p in paths.items()}
    calls = {n: m.single_call(x[:1]) for n, m in models.items()}
    per_call = {n: [] for n in models}
    for fn in calls.values():  # warm-up
        for _ in range(20):
            fn()
    for _ in range(args.rounds):
        for name, fn in calls.items():
            t = time.perf_counter()
            for _ in range(50):
                fn()
            per_call[name].append((time.perf_counter() - t) / 50 * 1e3)
    float_ms = float(np.median(per_call["converter_float32"]))
    float_size = fsutil.size_bytes(paths["converter_float32"])
    rows = []
    for name, path in paths.items():
        pred = models[name].predict(x).argmax(1)
        ms = float(np.median(per_call[name]))
        rows.append(
            {
                "name": name,
                "size_bytes": fsutil.size_bytes(path),
                "size_vs_float": fsutil.size_bytes(path) / float_size,
                "accuracy": float(np.mean(pred == y) * 100),
                "latency_ms_b1": ms,
                "latency_vs_float": ms / float_ms,
                "quantize_s": seconds[name],
                **extra.get(name, {}),
            }
        )
    print(f"runtime: {runtime.runtime_name()}, test examples: {len(y)}")
    print("| variant | size bytes | size / float | accuracy % | b1 latency ms | latency / float "
          "| quantize s | worst op SNR dB |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        snr = r.get("worst_snr_db")
        print(
            f"| {r['name']} | {r['size_bytes']} | {r['size_vs_float']:.3f} | {r['accuracy']:.2f} "
            f"| {r['latency_ms_b1']:.4f} | {r['latency_vs_float']:.2f} | {r['quantize_s']:.1f} "
            f"| {'' if snr is None else f'{snr:.1f}'} |"
        )
    for r in rows:
        if "types" in r:
            print(f"{r['name']}: tensor types {r['types']}, int8 ops {r['int8_ops']}, "
                  f"float ops {r['float_ops']}")  # fmt: skip
    print(f"total {time.time() - start:.0f} s")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
