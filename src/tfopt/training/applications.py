"""The ``tf_keras.applications`` families as tfopt classifiers, and loading a weights file.

Each family is built with ``weights=None`` (nothing downloads) and ``include_top=False``
on tfopt's input convention (raw features on ``x``, a ``Normalization`` layer holding
the training statistics), then a head: global average pooling, dropout, ``logits`` and
the softmax ``probabilities`` output. The backbone is built on the model's own tensors,
so the classifier is one flat functional graph that every compression technique sees
layer by layer. Inputs the families do not take are adapted inside the model: one
channel is repeated to three (``to_rgb``, so ImageNet weights fit) and a side below the
family's minimum is resized up (``resize``, bilinear).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

from tfopt import fsutil
from tfopt._keras import keras, tf
from tfopt.errors import ConfigError, ModelError
from tfopt.training.model_config import WIDTH_ARCHITECTURES, ModelConfig

log = logging.getLogger(__name__)

BN_MOMENTUM = 0.99
MIN_SIDE = 32  # every family's minimum input side with weights=None

# family -> (builder name in keras.applications, extra keyword arguments)
FAMILIES: dict[str, tuple[str, dict[str, Any]]] = {
    "mobilenet_v2": ("MobileNetV2", {}),
    # tfopt normalizes on input: the family's own 0-255 -> [-1, 1] rescaling is left out
    "mobilenet_v3_small": ("MobileNetV3Small", {"include_preprocessing": False}),
    "resnet50": ("ResNet50", {}),
    "efficientnet_b0": ("EfficientNetB0", {}),
}

# The narrower member distillation uses as the student when none is given.
STUDENT_ALPHA = 0.35
NARROWER = {
    "mobilenet_v2": ("mobilenet_v2", STUDENT_ALPHA),
    "mobilenet_v3_small": ("mobilenet_v3_small", STUDENT_ALPHA),
    # no narrower ResNet / EfficientNet in tf_keras.applications: the smallest mobile one
    "resnet50": ("mobilenet_v2", 1.0),
    "efficientnet_b0": ("mobilenet_v2", STUDENT_ALPHA),
}


def student_config(teacher: ModelConfig) -> ModelConfig:
    """The distillation student for a teacher built from ``teacher`` (a ``ModelConfig``):
    the family's narrower member (``alpha`` 0.35 for MobileNets; ResNet50 and
    EfficientNetB0 have no narrower member in tf_keras.applications, so MobileNetV2 at
    1.0 / 0.35, about 10x fewer parameters either way). ``weights_uri`` is not carried over."""
    if teacher.arch not in NARROWER:
        raise ConfigError(
            f"arch={teacher.arch!r} is no application family; allowed: {sorted(NARROWER)}"
        )
    arch, alpha = NARROWER[teacher.arch]
    if arch == teacher.arch and teacher.alpha <= alpha:
        alpha = teacher.alpha / 2  # already the narrow one: halve again
    return ModelConfig(arch=arch, alpha=alpha, dropout=teacher.dropout)


def adapt_input(x, input_shape: tuple[int, ...], arch: str):
    """Make ``x`` (normalized, ``input_shape``) a tensor the family takes."""
    if len(input_shape) != 3:
        raise ModelError(
            f"arch {arch!r} needs image inputs (height, width, channels); "
            f"got shape {tuple(input_shape)}; use arch 'mlp'"
        )
    height, width, channels = (int(d) for d in input_shape)
    if channels == 1:
        x = keras.layers.Concatenate(axis=-1, name="to_rgb")([x, x, x])
    if min(height, width) < MIN_SIDE:
        size = (max(height, MIN_SIDE), max(width, MIN_SIDE))
        x = keras.layers.Resizing(*size, interpolation="bilinear", name="resize")(x)
    return x


def build_backbone(arch: str, x, alpha: float = 1.0) -> keras.Model:
    """The family's feature extractor built on tensor ``x`` (its layers join x's graph)."""
    if arch not in FAMILIES:
        raise ConfigError(f"arch={arch!r} is no application family; allowed: {sorted(FAMILIES)}")
    fn_name, kwargs = FAMILIES[arch]
    fn: Callable[..., keras.Model] = getattr(keras.applications, fn_name)
    if arch in WIDTH_ARCHITECTURES:
        kwargs = {**kwargs, "alpha": alpha}
    backbone = fn(include_top=False, weights=None, input_tensor=x, **kwargs)
    # The families' BatchNormalization momentum (0.999, for ImageNet-length training) leaves
    # the moving statistics near their initial values after a few thousand steps: measured
    # on a 15k Fashion-MNIST subset, MobileNetV2 trained to 71% while inference (moving
    # statistics) stayed at chance, 10%. Keras' own default, 0.99, settles within an epoch.
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return backbone


def build_head(features, num_classes: int, dropout: float, output_name: str):
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    return keras.layers.Activation("softmax", dtype="float32", name=output_name)(logits)


def load_weights(model: keras.Model, weights_uri: str) -> None:
    """Load a weights file (local or ``gs://``) into ``model``.

    An HDF5 file (``.h5`` / ``.hdf5``) is matched layer by layer by name, so a backbone's
    ``no_top`` ImageNet file fills the backbone and leaves the head as built; any other
    path is a TensorFlow checkpoint prefix of this very model (``model.save_weights``).

    Raises:
        ModelError: the file is missing, matches no layer, or a weight's shape differs.
    """
    if weights_uri.endswith((".h5", ".hdf5")):
        _load_h5(model, weights_uri)
        return
    if not fsutil.exists(weights_uri + ".index"):
        raise ModelError(
            f"weights_uri={weights_uri!r}: no such weights file (allowed: a Keras .h5/.hdf5 "
            "weights file, or a TensorFlow checkpoint prefix with a .index file)"
        )
    try:
        model.load_weights(weights_uri).assert_existing_objects_matched()
    except (ValueError, AssertionError) as exc:
        raise ModelError(
            f"weights_uri={weights_uri!r} does not fit the model: {str(exc).splitlines()[0]}"
        ) from None


def _load_h5(model: keras.Model, weights_uri: str) -> None:
    import h5py  # type: ignore[import-untyped]

    if not fsutil.exists(weights_uri):
        raise ModelError(f"weights_uri={weights_uri!r}: no such file")
    tmp = tempfile.mkdtemp(prefix="tfopt-weights-")
    try:
        local = os.path.join(tmp, "weights.h5")  # h5py reads local files only
        tf.io.gfile.copy(weights_uri, local, overwrite=True)
        try:
            with h5py.File(local, "r") as fh:
                root = fh.get("model_weights", fh)
                names = [
                    n.decode() if isinstance(n, bytes) else n for n in root.attrs["layer_names"]
                ]
        except (OSError, KeyError) as exc:
            raise ModelError(
                f"weights_uri={weights_uri!r}: not a Keras HDF5 weights file ({exc})"
            ) from None
        ours = {la.name for la in model.layers}
        matched = [n for n in names if n in ours]
        if not matched:
            raise ModelError(
                f"weights_uri={weights_uri!r}: none of its {len(names)} layers "
                f"({', '.join(names[:5])}...) is a layer of the model "
                f"({', '.join(la.name for la in model.layers[:5])}...)"
            )
        try:
            model.load_weights(local, by_name=True, skip_mismatch=False)
        except ValueError as exc:
            raise ModelError(
                f"weights_uri={weights_uri!r} does not fit the model: {str(exc).splitlines()[0]}"
            ) from None
        log.info("loaded %d of %d layers' weights from %s", len(matched), len(ours), weights_uri)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
