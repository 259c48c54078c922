"""Image ingest figures: JPEG folders and Fashion-MNIST IDX, uint8 vs float32 storage.

    .venv/bin/python benchmarks/ingest_images.py [--images 20000] [--train-epochs 3] [--out f.json]

Needs Debian's ``dataset-fashion-mnist``. Measures, on this machine:
  * ingest throughput (images/s) and peak RSS of a JPEG class folder at 0.1x and 1x
    ``--images`` (each ingest in a fresh process; 1x again with a 32 MiB shuffle
    buffer), and of the Fashion-MNIST IDX files;
  * raw uint8 records against PNG-encoded ones (bytes, decode rate in tf.data);
  * training examples/s from uint8 storage against float32 storage of the same
    images, alternated in one run, and the bytes on disk of each;
  * with ``--train-epochs`` > 0: the default model trained that many epochs on all
    of Fashion-MNIST, its test accuracy on all 10,000 test images and the int8 drop.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

_CHILD = """
import json, sys, time, resource
from tfopt._keras import tf  # imported before the clock starts
from tfopt.data import ingest
t = time.perf_counter()
info = ingest.ingest(sys.argv[1], ingest.IngestConfig(**json.loads(sys.argv[2])))
print(json.dumps({"s": time.perf_counter() - t, "n": sum(info.counts.values()),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def ingest_in_child(out: str, **config) -> dict:
    """Ingest in a fresh process: its own peak RSS, no import time in the rate."""
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, out, json.dumps(config)],
        capture_output=True,
        text=True,
        check=True,
    )
    r = json.loads(res.stdout.strip().splitlines()[-1])
    r["images_per_s"] = r["n"] / r["s"]
    return r


def make_jpeg_folder(root: str, n: int, size: int = 64) -> None:
    """Fashion-MNIST images upscaled to ``size`` RGB (class-tinted) as JPEG files."""
    from PIL import Image

    from tfopt.data import idx

    d = idx.fashion_mnist_dir()
    files = idx.idx_files(d)["train"]
    y = idx.read_labels(files[1])[:n]
    r = idx._Reader(files[0], 3)
    x = np.frombuffer(r.read(784 * n, "images"), np.uint8).reshape(n, 28, 28)
    r.close()
    tint = np.random.default_rng(0).uniform(0.5, 1.0, (10, 3))
    for c in range(10):
        os.makedirs(os.path.join(root, f"class_{c}"), exist_ok=True)
    for i in range(n):
        img = Image.fromarray(x[i]).resize((size, size), Image.Resampling.BILINEAR)
        rgb = (np.asarray(img)[..., None] * tint[y[i]]).astype(np.uint8)
        Image.fromarray(rgb, "RGB").save(os.path.join(root, f"class_{y[i]}", f"{i:06d}.jpg"))


def dir_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))


def encoded_tradeoff(ds_dir: str, root: str) -> dict:
    """Raw uint8 records vs PNG-encoded ones: bytes on disk and tf.data read+decode rate."""
    from tfopt._keras import tf
    from tfopt.data import input_pipeline, schema

    info = schema.load_info(ds_dir)
    x, y = input_pipeline.load_arrays(info, "train", limit=10_000)
    raw = x.astype(np.uint8)
    shape = list(raw.shape[1:])
    paths = {"raw": os.path.join(root, "raw.tfrecord"), "png": os.path.join(root, "png.tfrecord")}
    for name, path in paths.items():
        with tf.io.TFRecordWriter(path) as w:
            for img, lab in zip(raw, y, strict=True):
                data = img.tobytes() if name == "raw" else tf.io.encode_png(img).numpy()
                feat = {
                    "x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[data])),
                    "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(lab)])),
                }
                w.write(
                    tf.train.Example(features=tf.train.Features(feature=feat)).SerializeToString()
                )
    spec = {"x": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

    def raw_batch(r):
        return tf.reshape(
            tf.io.decode_raw(tf.io.parse_example(r, spec)["x"], tf.uint8), [-1, *shape]
        )

    def png_batch(r):
        imgs = tf.io.parse_example(r, spec)["x"]
        return tf.map_fn(
            lambda b: tf.io.decode_png(b, channels=shape[-1]),
            imgs,
            fn_output_signature=tf.TensorSpec(shape, tf.uint8),
            parallel_iterations=16,
        )

    rates = {}
    for name, fn in (("raw", raw_batch), ("png", png_batch)):
        pipe = tf.data.TFRecordDataset(paths[name]).batch(256).map(fn, tf.data.AUTOTUNE)
        for _ in pipe:  # warm (file cache)
            pass
        t = time.perf_counter()
        for _ in range(3):
            for _ in pipe:
                pass
        rates[name] = 3 * len(raw) / (time.perf_counter() - t)
    return {
        "image_shape": shape,
        "raw_bytes_per_record": os.path.getsize(paths["raw"]) / len(raw),
        "png_bytes_per_record": os.path.getsize(paths["png"]) / len(raw),
        "raw_read_decode_per_s": rates["raw"],
        "png_read_decode_per_s": rates["png"],
    }


def training_rate(root: str) -> dict:
    """Examples/s of one epoch of the default model from uint8 vs float32 storage."""
    from tfopt._keras import keras
    from tfopt.data import idx, ingest, input_pipeline, schema
    from tfopt.training import models

    u8 = os.path.join(root, "fm-u8")
    f32 = os.path.join(root, "fm-f32")
    ingest.ingest(u8, ingest.IngestConfig(source="builtin:fashion_mnist", max_examples=20_000))
    info = schema.load_info(u8)
    arrays = {s: input_pipeline.load_arrays(info, s) for s in ("train", "test")}
    npz = os.path.join(root, "fm.npz")  # the same images as float32 (today's format)
    xtr = np.concatenate([arrays["train"][0], input_pipeline.load_arrays(info, "validation")[0]])
    ytr = np.concatenate([arrays["train"][1], input_pipeline.load_arrays(info, "validation")[1]])
    np.savez(npz, x_train=xtr, y_train=ytr, x_test=arrays["test"][0], y_test=arrays["test"][1])
    ingest.ingest(f32, ingest.IngestConfig(source=npz))
    del idx
    out = {"uint8_bytes": dir_bytes(u8), "float32_bytes": dir_bytes(f32), "rates": {}}
    for rnd in range(2):
        for name, path in (("uint8", u8), ("float32", f32)):
            dinfo = schema.load_info(path)
            model = models.build_model(models.ModelConfig(), dinfo.feature_shape, 10, 72.9, 8000)
            model.compile("adam", "sparse_categorical_crossentropy")
            ds = input_pipeline.make_dataset(
                dinfo, "train", input_pipeline.InputConfig(batch_size=64, shuffle=True)
            )
            model.fit(ds.take(20), verbose=0)  # warm up (graph build, cache fill excluded)
            t = time.perf_counter()
            model.fit(ds, epochs=1, verbose=0)
            rate = dinfo.counts["train"] / (time.perf_counter() - t)
            out["rates"].setdefault(name, []).append(rate)
            keras.backend.clear_session()
            print(f"  training round {rnd} {name}: {rate:.0f} examples/s", flush=True)
    return out


def full_run(root: str, epochs: int) -> dict:
    """Default model on all of Fashion-MNIST: accuracy on 10,000 test images, int8 drop."""
    from tfopt.compression import tflite
    from tfopt.data import ingest, input_pipeline, schema
    from tfopt.evaluation.runtime import Predictor
    from tfopt.training import train

    ds = os.path.join(root, "fm-full")
    ingest.ingest(ds, ingest.IngestConfig(source="builtin:fashion_mnist"))
    t = time.perf_counter()
    cfg = train.TrainConfig(epochs=epochs, early_stopping_patience=0)
    train.train_model(ds, os.path.join(root, "model"), cfg)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    q = tflite.convert_to_tflite(
        os.path.join(root, "model"),
        ds,
        os.path.join(root, "m.tflite"),
        tflite.TFLiteConfig(mode="int8", max_accuracy_drop=-1.0),
    )
    quant_s = time.perf_counter() - t
    x, y = input_pipeline.load_arrays(schema.load_info(ds), "test")
    accs = {}
    for name, path, fmt in (
        ("baseline", os.path.join(root, "model"), "saved_model"),
        ("tflite_int8", os.path.join(root, "m.tflite"), "tflite"),
    ):
        pred = Predictor(path, fmt)
        p = np.concatenate([pred.predict(x[i : i + 500]) for i in range(0, len(x), 500)])
        accs[name] = float(np.mean(p.argmax(1) == y) * 100)
    return {
        "epochs": epochs,
        "train_s": train_s,
        "quantize_s": quant_s,
        "int8_mode": q.mode,
        "test_examples": len(y),
        "accuracy": accs,
        "int8_drop_points": accs["baseline"] - accs["tflite_int8"],
        "baseline_bytes": sum(
            os.path.getsize(os.path.join(dp, f))
            for dp, _, fs in os.walk(os.path.join(root, "model"))
            for f in fs
        ),
        "int8_bytes": os.path.getsize(os.path.join(root, "m.tflite")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--train-epochs", type=int, default=0)
    parser.add_argument("--skip-training-rate", action="store_true")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="tfopt-bench-images-")
    res: dict = {"cores": os.cpu_count()}
    try:
        jpg = os.path.join(root, "jpeg")
        t = time.perf_counter()
        make_jpeg_folder(jpg, args.images)
        print(f"wrote {args.images} JPEGs in {time.perf_counter() - t:.0f} s", flush=True)
        small = os.path.join(root, "jpeg-small")
        for c in os.listdir(jpg):  # the first tenth of each class, as hard links
            os.makedirs(os.path.join(small, c))
            names = sorted(os.listdir(os.path.join(jpg, c)))
            for f in names[: max(1, len(names) // 10)]:
                os.link(os.path.join(jpg, c, f), os.path.join(small, c, f))
        res["jpeg_0.1x"] = ingest_in_child(os.path.join(root, "d1"), source=small)
        res["jpeg_1x"] = ingest_in_child(os.path.join(root, "d2"), source=jpg)
        # memory is bounded by the shuffle window (buffer_bytes per split), not the source
        res["jpeg_1x_buffer_32MiB"] = ingest_in_child(
            os.path.join(root, "d5"), source=jpg, buffer_bytes=32 << 20
        )
        res["jpeg_1x"]["dataset_bytes"] = dir_bytes(os.path.join(root, "d2"))
        res["jpeg_1x"]["jpeg_bytes"] = sum(
            os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(jpg) for f in fs
        )
        res["idx_fashion_mnist"] = ingest_in_child(
            os.path.join(root, "d3"), source="builtin:fashion_mnist"
        )
        res["idx_fashion_mnist_7k"] = ingest_in_child(
            os.path.join(root, "d4"), source="builtin:fashion_mnist", max_examples=7000
        )
        print(json.dumps(res, indent=1), flush=True)
        res["encoding_jpeg_folder"] = encoded_tradeoff(os.path.join(root, "d2"), root)
        res["encoding_fashion_mnist"] = encoded_tradeoff(os.path.join(root, "d3"), root)
        print(json.dumps(res, indent=1), flush=True)
        if not args.skip_training_rate:
            res["training"] = training_rate(root)
        if args.train_epochs:
            res["full_run"] = full_run(root, args.train_epochs)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(res, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(res, fh, indent=1)


if __name__ == "__main__":
    main()
