"""GPU check: train-step time for fp32, mixed_float16 and XLA, and MirroredStrategy.

    .venv/bin/python benchmarks/gpu_check.py [--batch 256 --image 128 --steps 30]

Trains a ResNet-style CNN (about 11 M parameters at 128x128x3) on random
data held on the device, so input pipelines do not limit the numbers; times
``--steps`` steps after ``--warmup`` steps (tracing, XLA compilation,
autotuning). Prints one table row per setting with step time, images/s and
speed-up over fp32 on one GPU. Exits 0 with a message when no GPU is visible.
"""

from __future__ import annotations

import argparse
import sys
import time


def build(keras, image: int, classes: int = 100):
    x = inp = keras.Input((image, image, 3), name="x")
    x = keras.layers.Conv2D(64, 7, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    for filters, blocks in ((64, 2), (128, 2), (256, 2), (512, 2)):
        for b in range(blocks):
            stride = 2 if b == 0 and filters > 64 else 1
            shortcut = x
            y = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
            y = keras.layers.BatchNormalization()(y)
            y = keras.layers.ReLU()(y)
            y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
            y = keras.layers.BatchNormalization()(y)
            if stride != 1 or shortcut.shape[-1] != filters:
                shortcut = keras.layers.Conv2D(filters, 1, strides=stride, use_bias=False)(x)
                shortcut = keras.layers.BatchNormalization()(shortcut)
            x = keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(classes)(x)
    out = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(out)
    return keras.Model(inp, out)


def measure(keras, tf, strategy, precision: str, xla: bool, args) -> tuple[float, int]:
    keras.mixed_precision.set_global_policy(precision)
    try:
        replicas = strategy.num_replicas_in_sync
        batch = args.batch * replicas
        with strategy.scope():
            model = build(keras, args.image)
            model.compile(
                optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                loss="sparse_categorical_crossentropy",
                jit_compile=xla,
            )
        x = tf.random.uniform((batch, args.image, args.image, 3))
        y = tf.random.uniform((batch,), maxval=100, dtype=tf.int32)
        ds = tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(tf.data.AUTOTUNE)
        ds = strategy.experimental_distribute_dataset(ds) if replicas > 1 else ds
        it = iter(ds)
        model.fit(it, steps_per_epoch=args.warmup, epochs=1, verbose=0)
        start = time.perf_counter()
        model.fit(it, steps_per_epoch=args.steps, epochs=1, verbose=0)
        return (time.perf_counter() - start) / args.steps, batch
    finally:
        keras.mixed_precision.set_global_policy("float32")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="images per GPU")
    parser.add_argument("--image", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    from tfopt._keras import keras, tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        print("gpu_check: no GPU visible to TensorFlow; nothing to measure.")
        return 0
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
    print(
        f"GPUs: {len(gpus)} ({', '.join(names)}); TF {tf.__version__}; "
        f"batch/GPU {args.batch}; image {args.image}x{args.image}x3"
    )
    one = tf.distribute.OneDeviceStrategy("/gpu:0")
    rows = [
        ("fp32", one, "float32", False),
        ("mixed_float16", one, "mixed_float16", False),
        ("fp32 + XLA", one, "float32", True),
        ("mixed_float16 + XLA", one, "mixed_float16", True),
    ]
    if len(gpus) > 1:
        mirrored = tf.distribute.MirroredStrategy()
        rows += [
            (f"Mirrored x{len(gpus)} fp32", mirrored, "float32", False),
            (f"Mirrored x{len(gpus)} mixed_float16", mirrored, "mixed_float16", False),
        ]
    print(f"{'setting':<30} {'step ms':>9} {'images/s':>10} {'vs fp32':>8}")
    base = None
    for label, strategy, precision, xla in rows:
        try:
            step, batch = measure(keras, tf, strategy, precision, xla, args)
        except Exception as exc:  # keep the table going: one setting may not fit or compile
            print(f"{label:<30} failed: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        ips = batch / step
        base = base or ips
        print(f"{label:<30} {step * 1000:>9.1f} {ips:>10.0f} {ips / base:>7.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
