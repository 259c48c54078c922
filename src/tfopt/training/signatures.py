"""What a served image model carries besides ``serving_default``: signatures that take the
raw image, and the label vocabulary asset.

``serving_images`` takes a uint8 batch of any height and width with 1 or 3 channels;
``serving_encoded`` takes JPEG/PNG/BMP/GIF bytes (TF Serving REST: ``{"b64": ...}``).
Both adapt the image the way ingest does (channels first, then a bilinear, antialiased
resize, rounded to uint8 values) and feed the model, whose Normalization layer scales
the 0..255 values, so a client sends the picture and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator

from tfopt._keras import keras, tf
from tfopt.errors import ModelError

IMAGES_SIGNATURE = "serving_images"
IMAGES_INPUT = "images"
ENCODED_SIGNATURE = "serving_encoded"
ENCODED_INPUT = "image_bytes"  # TF Serving's REST API decodes {"b64": ...} for *_bytes inputs
LABELS_ASSET = "labels.txt"
_LABELS_ATTR = "tfopt_labels_asset"


def image_shape(model: keras.Model) -> tuple[int, int, int] | None:
    """``(height, width, channels)`` of an image model with 1 or 3 channels, else None."""
    shape = tuple(model.input_shape[1:])
    if len(shape) != 3 or None in shape or shape[2] not in (1, 3):
        return None
    return int(shape[0]), int(shape[1]), int(shape[2])


def _adapt(x, size: tuple[int, int, int]):
    """float32 ``[n, H, W, 1 or 3]`` images with 0..255 values -> the model's ``[n, h, w, c]``."""
    h, w, c = size
    in_c = tf.shape(x)[-1]
    check = tf.debugging.assert_equal(
        tf.logical_or(tf.equal(in_c, 1), tf.equal(in_c, 3)),
        True,
        message=f"images need 1 (grayscale) or 3 (RGB) channels; this model takes {c}",
    )
    with tf.control_dependencies([check]):  # before any op that would fail less clearly
        x = tf.identity(x)
    if c == 1:
        x = tf.cond(tf.equal(in_c, 3), lambda: tf.image.rgb_to_grayscale(x), lambda: x)
    else:
        x = tf.cond(tf.equal(in_c, 1), lambda: tf.tile(x, [1, 1, 1, 3]), lambda: x)
    same = tf.logical_and(tf.equal(tf.shape(x)[1], h), tf.equal(tf.shape(x)[2], w))
    x = tf.cond(same, lambda: x, lambda: tf.image.resize(x, [h, w], antialias=True))
    # ingest stores uint8: round as it does, so served and evaluated inputs agree
    return tf.ensure_shape(tf.round(tf.clip_by_value(x, 0.0, 255.0)), [None, h, w, c])


def image_functions(model: keras.Model, output_name: str) -> dict:
    """``{serving_images, serving_encoded}`` for an image model (see the module docstring)."""
    size = image_shape(model)
    if size is None:
        raise ModelError(f"not an image model with 1 or 3 channels: input {model.input_shape}")
    h, w, c = size

    def predict(x):
        return {output_name: tf.cast(model(x, training=False), tf.float32)}

    @tf.function(
        input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8, name=IMAGES_INPUT)]
    )
    def serve_images(images):
        return predict(_adapt(tf.cast(images, tf.float32), size))

    def decode(data):
        image = tf.io.decode_image(data, channels=c, dtype=tf.uint8, expand_animations=False)
        return _adapt(tf.cast(image, tf.float32)[None], size)[0]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=ENCODED_INPUT)])
    def serve_encoded(image_bytes):
        spec = tf.TensorSpec([h, w, c], tf.float32)
        return predict(tf.map_fn(decode, image_bytes, fn_output_signature=spec))

    return {IMAGES_SIGNATURE: serve_images, ENCODED_SIGNATURE: serve_encoded}


@contextlib.contextmanager
def labels_asset(model: keras.Model, class_names: tuple[str, ...]) -> Iterator[None]:
    """While saving ``model``, track ``assets/labels.txt`` (one class name per line, in
    label-id order), as TF Serving classification models ship their vocabulary."""
    if not class_names:
        yield
        return
    bad = [n for n in class_names if "\n" in str(n) or "\r" in str(n)]
    if bad:
        raise ModelError(f"class names must not contain line breaks: {bad[:3]}")
    staging = tempfile.mkdtemp(prefix="tfopt-labels-")
    try:
        path = os.path.join(staging, LABELS_ASSET)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("".join(f"{n}\n" for n in class_names))
        setattr(model, _LABELS_ATTR, tf.saved_model.Asset(path))
        try:
            yield
        finally:
            # untrack it too: the caller's model must not keep a dependency on a deleted file
            delattr(model, _LABELS_ATTR)
            model._delete_tracking(_LABELS_ATTR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_labels(saved_model_dir: str) -> list[str]:
    """The label vocabulary of a saved model (``[]`` when it ships none)."""
    path = os.path.join(saved_model_dir, "assets", LABELS_ASSET)
    if not tf.io.gfile.exists(path):
        return []
    with tf.io.gfile.GFile(path, "r") as fh:
        return fh.read().splitlines()
