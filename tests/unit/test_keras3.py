"""Keras 3 models (issue 30): the translation to tf_keras and back, layer by layer."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt._keras import keras as tfk
from tfopt.errors import ModelError
from tfopt.training import keras3
from tfopt.training.keras3_layers import (
    _SAME_ACTIVATIONS,
    _SPLIT_ACTIVATIONS,
    NoEquivalentError,
)

K = keras3.k3()


def _perturb_batchnorm(model) -> None:
    """Moving statistics and scales away from their initial values, so they count."""
    rng = np.random.default_rng(1)
    for layer in model._flatten_layers():
        if isinstance(layer, K.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights(
                [
                    g * rng.uniform(0.5, 1.5, g.shape),
                    b + rng.normal(0, 0.1, b.shape),
                    m + rng.normal(0, 0.1, m.shape),
                    v * rng.uniform(0.5, 1.5, v.shape),
                ]
            )


def every_layer_model():
    """One Keras 3 functional model with every layer type issue 30 names, a shared layer,
    a nested Sequential, keras.ops in the graph and activations tf_keras has no name for."""
    inputs = K.Input((12, 12, 3), name="pixels")
    x = K.layers.Rescaling(1 / 255.0)(inputs)
    x = K.layers.Normalization(axis=None, mean=0.5, variance=0.08)(x)
    x = K.layers.ZeroPadding2D(1)(x)
    x = K.layers.Conv2D(8, 3, activation="relu", name="stem")(x)
    r = K.layers.SeparableConv2D(8, 3, padding="same", activation="relu6", name="sep")(x)
    r = K.layers.BatchNormalization(name="sep_bn")(r)
    x = K.layers.Add(name="residual")([x, r])
    d = K.layers.DepthwiseConv2D(3, padding="same", activation="swish", name="dw")(x)
    d = K.layers.LayerNormalization(name="ln")(d)
    d = K.layers.Activation("gelu", name="gelu")(d)
    d = K.layers.ReLU(6.0, name="relu6_layer")(d + 3.0) * (1.0 / 6.0)  # keras.ops nodes
    x = K.layers.Concatenate(name="concat")([x, d])
    g = K.layers.GlobalAveragePooling2D(keepdims=True)(x)
    g = K.layers.Dense(16, activation="sigmoid", name="gate")(g)
    x = K.layers.Multiply(name="excite")([x, g])
    x = K.layers.MaxPooling2D(2)(x)
    x = K.layers.AveragePooling2D(2)(x)
    block = K.Sequential(
        [K.layers.Conv2D(4, 1, activation="hard_silu"), K.layers.Activation("relu")],
        name="block",
    )
    x = block(x)
    shared = K.layers.Conv2D(4, 1, name="shared")
    x = K.layers.Add()([shared(x), shared(x * 2.0)])
    x = K.layers.Reshape((-1,))(x)
    x = K.layers.Dropout(0.2)(x)
    x = K.layers.Flatten()(x)
    x = K.layers.Dense(10, activation="softmax", name="probabilities")(x)
    return K.Model(inputs, x, name="every_layer")


def _images(n=32, shape=(12, 12, 3), seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, *shape)).astype(np.float32)


def test_every_named_layer_translates_both_ways():
    model = every_layer_model()
    _perturb_batchnorm(model)
    x = _images()
    tfk_model = keras3.to_tf_keras(model)
    assert isinstance(tfk_model, tfk.Model)
    assert keras3.max_abs_diff(model, tfk_model, x) <= keras3.TOLERANCE
    types = {type(la).__name__ for la in tfk_model.layers}
    assert {"SeparableConv2D", "DepthwiseConv2D", "LayerNormalization", "Concatenate"} <= types
    assert "TFOpLambda" in types  # x + 3.0 and the split activations
    # the nested Sequential stays a model; the shared layer stays one layer
    assert isinstance(tfk_model.get_layer("block"), tfk.Model)
    assert len(tfk_model.get_layer("shared")._inbound_nodes) == 2
    back = keras3.to_keras3(tfk_model)
    assert isinstance(back, K.Model)
    assert keras3.max_abs_diff(tfk_model, back, x) <= keras3.TOLERANCE


def test_adapted_normalization_and_mixed_precision_policy():
    inputs = K.Input((5,))
    norm = K.layers.Normalization()
    norm.adapt(np.random.default_rng(0).normal(3.0, 2.0, (64, 5)).astype(np.float32))
    out = K.layers.Dense(3, dtype="float32")(norm(inputs))
    model = K.Model(inputs, out)
    x = np.random.default_rng(1).normal(3, 2, (16, 5)).astype(np.float32)
    translated = keras3.to_tf_keras(model)
    assert keras3.max_abs_diff(model, translated, x) <= keras3.TOLERANCE


@pytest.mark.parametrize("name", sorted(_SAME_ACTIVATIONS | set(_SPLIT_ACTIVATIONS) | {"silu"}))
def test_activation_is_the_same_function(name):
    inputs = K.Input((6,))
    model = K.Model(inputs, K.layers.Dense(6, activation=name)(inputs))
    x = np.linspace(-8, 8, 96, dtype=np.float32).reshape(16, 6)
    assert keras3.max_abs_diff(model, keras3.to_tf_keras(model), x) <= keras3.TOLERANCE


@pytest.mark.parametrize(
    "family",
    [
        "MobileNetV2",
        "MobileNetV3Small",
        pytest.param("EfficientNetB0", marks=pytest.mark.slow),
        pytest.param("ResNet50", marks=pytest.mark.slow),
    ],
)
def test_keras_applications_translate(family):
    kwargs = {"alpha": 0.35} if family == "MobileNetV2" else {}
    model = getattr(K.applications, family)(
        input_shape=(32, 32, 3), weights=None, classes=10, **kwargs
    )
    _perturb_batchnorm(model)
    translated = keras3.to_tf_keras(model)
    x = _images(8, (32, 32, 3))
    assert keras3.max_abs_diff(model, translated, x) <= keras3.TOLERANCE
    assert keras3.max_abs_diff(translated, keras3.to_keras3(translated), x) <= keras3.TOLERANCE


def test_a_layer_with_no_equivalent_is_named():
    @K.saving.register_keras_serializable(package="test_keras3")
    class Clip(K.layers.Layer):
        def call(self, x):
            return K.ops.clip(x, 0.0, 1.0)

    inputs = K.Input((4,))
    model = K.Model(inputs, K.layers.Dense(2)(Clip(name="my_clip")(inputs)))
    with pytest.raises(NoEquivalentError, match=r"layer 'my_clip' \(Clip\).*tf_keras_objects"):
        keras3.to_tf_keras(model)
    inputs = K.Input((4,))
    gru = K.Model(inputs, K.layers.Dense(2, activation="celu")(inputs))
    with pytest.raises(NoEquivalentError, match=r"activation 'celu' has no tf_keras"):
        keras3.to_tf_keras(gru)


def test_a_subclassed_model_says_what_can_apply():
    class Net(K.Model):
        def __init__(self):
            super().__init__()
            self.dense = K.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(np.zeros((1, 4), np.float32))
    with pytest.raises(ModelError, match=r"subclassed Keras 3 model.*model\.export"):
        keras3.to_tf_keras(net, where="m")


def test_another_backend_says_what_works_and_that_works(tmp_path):
    import os
    import subprocess
    import sys

    code = "from tfopt.training import keras3; print(keras3.k3().__version__)"

    def run(backend):
        env = {**os.environ, "KERAS_BACKEND": backend}
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)

    wrong = run("numpy")
    assert wrong.returncode != 0
    assert "unset KERAS_BACKEND or set it to tensorflow" in wrong.stderr
    right = run("tensorflow")  # the advice
    assert right.returncode == 0 and right.stdout.strip() == K.__version__
