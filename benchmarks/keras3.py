"""Keras 3 models (issue 30): a Keras 3 MobileNetV2 against the tf_keras one, and the import cost.

    .venv/bin/python benchmarks/keras3.py [--max-examples 20000] [--epochs 5]
        [--qat-epochs 1] [--prune-epochs 2] [--repeats 3] [--no-families] [--out F]

1. Families: on the same seeded Fashion-MNIST subset as benchmarks/families.py, the
   families benchmark's tf_keras MobileNetV2 (alpha 0.35, trained by tfopt) and a Keras 3
   MobileNetV2 built the same way (the same input adaptation, backbone with BatchNorm
   momentum 0.99, head) trained by Keras 3 with tfopt's recipe (Adam 1e-3, batch 64,
   early stopping on val_loss, patience 3, best weights), saved as ``.keras`` and imported
   (``model_uri``); then the same table (families.measure): sizes, int8 / QAT / pruning
   drops, latency ratios, pre-flight against applied.
2. Import cost: for MobileNetV2 (alpha 0.35) and ResNet50 on Fashion-MNIST's 28x28x1, the
   import step of the Keras 3 ``.keras`` file against the import of the same model saved
   by tf_keras, each in a fresh process after tfopt and TensorFlow are imported (what a
   warm-started step has), median of ``--repeats``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import families

from tfopt.data import ingest, input_pipeline, schema
from tfopt.training import imported, keras3, train

BN_MOMENTUM = 0.99  # as tfopt.training.applications sets it


def keras3_classifier(arch: str, info, mean: float, var: float, alpha: float = 0.35):
    """tfopt's family classifier (training/models.py + applications.py), in Keras 3."""
    k = keras3.k3()
    inputs = k.Input(tuple(info.feature_shape), name="x")
    x = k.layers.Normalization(axis=None, mean=mean, variance=var, name="normalize")(inputs)
    x = k.layers.Concatenate(axis=-1, name="to_rgb")([x, x, x])
    x = k.layers.Resizing(32, 32, interpolation="bilinear", name="resize")(x)
    if arch == "mobilenet_v2":
        backbone = k.applications.MobileNetV2(
            include_top=False, weights=None, input_tensor=x, alpha=alpha
        )
    else:
        backbone = k.applications.ResNet50(include_top=False, weights=None, input_tensor=x)
    for layer in backbone.layers:
        if isinstance(layer, k.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    x = k.layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    x = k.layers.Dropout(0.1, name="dropout")(x)
    x = k.layers.Dense(info.num_classes, name="logits")(x)
    out = k.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return k.Model(inputs, out, name=f"{arch}_keras3")


def train_keras3(model, info, epochs: int, seed: int = 42) -> dict:
    k = keras3.k3()
    k.utils.set_random_seed(seed)
    x, y = input_pipeline.load_arrays(info, "train")
    xv, yv = input_pipeline.load_arrays(info, "validation")
    model.compile(k.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(
        x.astype(np.float32),
        y,
        batch_size=64,
        epochs=epochs,
        validation_data=(xv.astype(np.float32), yv),
        callbacks=[k.callbacks.EarlyStopping(patience=3, restore_best_weights=True)],
        verbose=2,
    )
    return {
        "train_seconds": round(time.perf_counter() - start, 1),
        "epochs_run": len(history.history["loss"]),
    }


IMPORT_CODE = """
import json, sys, time
from tfopt.training import imported
start = time.perf_counter()
r = imported.import_model(sys.argv[1], sys.argv[2], sys.argv[3])
print(json.dumps({"seconds": time.perf_counter() - start, "keras": r.keras}))
"""


PARTS_CODE = """
import json, sys, tempfile, time
import numpy as np
from tfopt._keras import keras as tfk
from tfopt.data import input_pipeline, schema
from tfopt.training import keras3
k3_path, tfk_path, ds = sys.argv[1:4]
x, _ = input_pipeline.load_arrays(schema.load_info(ds), "train", limit=keras3.CHECK_EXAMPLES)
t = {}
s = time.perf_counter(); tfk.models.load_model(tfk_path, compile=False)
t["tf_keras_load"] = time.perf_counter() - s
s = time.perf_counter(); keras3.k3(); t["keras3_import"] = time.perf_counter() - s
s = time.perf_counter(); m = keras3.load(k3_path, k3_path, {}, "3")
t["keras3_load"] = time.perf_counter() - s
s = time.perf_counter(); tm = keras3.to_tf_keras(m); t["translate"] = time.perf_counter() - s
s = time.perf_counter(); keras3.check_equal(m, tm, x.astype(np.float32), "m")
t["check_256"] = time.perf_counter() - s
s = time.perf_counter()
keras3.write_keras3(tm, tempfile.mkdtemp(), keras3.origin("3", "file", True))
t["keras3_file"] = time.perf_counter() - s
print(json.dumps(t))
"""


def part_seconds(k3_path: str, tfk_path: str, ds: str, repeats: int) -> dict:
    """The Keras 3 path's parts against tf_keras' load of the same model, each a median."""
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", PARTS_CODE, k3_path, tfk_path, ds],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}


def import_seconds(src: str, ds: str, root: str, repeats: int) -> dict:
    runs = []
    for i in range(repeats):
        out = os.path.join(root, f"imported-{os.path.basename(src)}-{i}")
        done = subprocess.run(
            [sys.executable, "-c", IMPORT_CODE, src, ds, out],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "median_seconds": statistics.median(r["seconds"] for r in runs),
        "seconds": [round(r["seconds"], 2) for r in runs],
        "keras": runs[-1]["keras"],
    }


def import_cost(ds: str, root: str, repeats: int) -> list[dict]:
    info = schema.load_info(ds)
    mean, var = train.feature_stats(info)
    rows = []
    for arch in ("mobilenet_v2", "resnet50"):
        model = keras3_classifier(arch, info, mean, var)
        k3_path = os.path.join(root, f"{arch}.keras")
        model.save(k3_path)
        tfk_path = os.path.join(root, f"{arch}-tf_keras.keras")
        keras3.to_tf_keras(model).save(tfk_path)
        k3 = import_seconds(k3_path, ds, root, repeats)
        tfk = import_seconds(tfk_path, ds, root, repeats)
        parts = part_seconds(k3_path, tfk_path, ds, repeats)
        row = {
            "parts": parts,
            "arch": arch,
            "params": int(model.count_params()),
            "layers": len(model.layers),
            "keras3": k3,
            "tf_keras": tfk,
            "added_seconds": round(k3["median_seconds"] - tfk["median_seconds"], 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        "\n| model | params | import tf_keras .keras s | import Keras 3 .keras s | added s | "
        "tf_keras load | Keras 3 import / load / translate / check 256 / Keras 3 file |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        e = r["keras3"]["keras"]
        print(
            f"| {r['arch']} | {r['params']:,} | {r['tf_keras']['median_seconds']:.1f} | "
            f"{r['keras3']['median_seconds']:.1f} (load + translate + check "
            f"{e.get('seconds', 0):.1f}, Keras 3 file {e.get('keras3_seconds', 0):.1f}) | "
            f"{r['added_seconds']:.1f} | {r['parts']['tf_keras_load']:.2f} | "
            + " / ".join(
                f"{r['parts'][k]:.2f}"
                for k in ("keras3_import", "keras3_load", "translate", "check_256", "keras3_file")
            )
            + " |"
        )
    return rows


def seed_spread(ds: str, root: str, x, y, epochs: int, seeds: list[int]) -> dict:
    """Test accuracy of the baseline trained from other seeds, by each Keras: the noise
    the two table rows' baselines differ within."""
    from tfopt.evaluation.runtime import Predictor
    from tfopt.training import models

    info = schema.load_info(ds)
    mean, var = train.feature_stats(info)
    out: dict = {"tf_keras": {}, "keras3": {}}
    for seed in seeds:
        path = os.path.join(root, f"seed-{seed}-tf_keras")
        config = train.TrainConfig(
            model=models.ModelConfig(arch="mobilenet_v2", alpha=0.35), epochs=epochs, seed=seed
        )
        train.train_model(ds, path, config)
        acc = float(np.mean(Predictor(path, "saved_model").predict(x).argmax(1) == y) * 100)
        out["tf_keras"][seed] = acc
        model = keras3_classifier("mobilenet_v2", info, mean, var)
        train_keras3(model, info, epochs, seed)
        acc = float(np.mean(np.asarray(model.predict(x, verbose=0)).argmax(1) == y) * 100)
        out["keras3"][seed] = acc
        print(json.dumps({"seed": seed, **{k: v[seed] for k, v in out.items()}}), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--qat-epochs", type=int, default=1)
    parser.add_argument("--prune-epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-families", action="store_true")
    parser.add_argument("--no-import", action="store_true")
    parser.add_argument("--seeds", default="", help="only the baselines from these seeds")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    root = tempfile.mkdtemp(prefix="tfopt-bench-keras3-")
    ds = os.path.join(root, "fashion")
    info = ingest.ingest(
        ds, ingest.IngestConfig(source="builtin:fashion_mnist", max_examples=args.max_examples)
    )
    x, y = input_pipeline.load_arrays(info, "test")
    print(f"Fashion-MNIST subset: {info.counts}; load {os.getloadavg()}", flush=True)
    if args.seeds:
        seeds = [int(v) for v in args.seeds.split(",")]
        result = {"seeds": seed_spread(ds, root, x, y, args.epochs, seeds)}
        print(json.dumps(result))
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(result, fh, indent=1)
        return
    result = {"import": [] if args.no_import else import_cost(ds, root, args.repeats)}
    if not args.no_families:
        tfk = families.family(
            "mobilenet_v2", ds, root, args.epochs, x, y, args.qat_epochs, args.prune_epochs
        )
        print(json.dumps(tfk), flush=True)
        mean, var = train.feature_stats(info)
        model = keras3_classifier("mobilenet_v2", info, mean, var)
        k3: dict = {"family": "mobilenet_v2 Keras 3", "alpha": 0.35}
        k3 |= train_keras3(model, info, args.epochs)
        src = os.path.join(root, "mobilenet_v2_keras3.keras")
        model.save(src)
        base = os.path.join(root, "mobilenet_v2_keras3")
        r = imported.import_model(src, ds, base)
        k3 |= {"params": r.params, "keras": r.keras}
        k3 |= families.measure(
            "mobilenet_v2_keras3", base, ds, root, x, y, args.qat_epochs, args.prune_epochs
        )
        print(json.dumps(k3), flush=True)
        result["families"] = [tfk, k3]
        families.print_table(result["families"])
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
