"""Prune, QAT and low-rank on a user-style nested model (a MobileNetV2 inside a classifier)."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt._keras import keras
from tfopt.compression import common, lowrank, prune, qat
from tfopt.training import models

from helpers.data import synthetic_images

SHAPE = (32, 32, 3)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    return synthetic_images(str(tmp_path_factory.mktemp("data") / "rgb32"), 64, SHAPE, 4)


def _nested_classifier() -> keras.Model:
    """The transfer-learning shape: a backbone model, then a Sequential head, nested."""
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(
        input_shape=SHAPE, alpha=0.35, include_top=False, weights=None
    )
    inputs = keras.Input(SHAPE, name="x")
    h = keras.layers.Rescaling(1 / 127.5, offset=-1, name="scale")(inputs)
    h = base(h)
    head = keras.Sequential(
        [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(16, activation="relu")],
        name="head",
    )
    outputs = keras.layers.Dense(4, activation="softmax", name="probabilities")(head(h))
    return keras.Model(inputs, outputs)


def _mini_classifier() -> keras.Model:
    """The same shape, small: a backbone of two MobileNetV2-style inverted residual blocks
    (1x1 expand, depthwise, 1x1 project, each with BatchNorm; a residual Add), nested."""
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name="stem_bn")(x))
    for i in range(2):
        skip = x
        h = keras.layers.Conv2D(48, 1, use_bias=False, name=f"b{i}_expand")(x)
        h = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name=f"b{i}_expand_bn")(h))
        h = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"b{i}_dw")(h)
        h = keras.layers.ReLU(6.0)(keras.layers.BatchNormalization(name=f"b{i}_dw_bn")(h))
        h = keras.layers.Conv2D(16, 1, use_bias=False, name=f"b{i}_project")(h)
        h = keras.layers.BatchNormalization(name=f"b{i}_project_bn")(h)
        x = keras.layers.Add(name=f"b{i}_add")([skip, h])
    base = keras.Model(inputs, x, name="mini_backbone")
    outer = keras.Input(SHAPE, name="x")
    h = base(keras.layers.Rescaling(1 / 127.5, offset=-1, name="scale")(outer))
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    return keras.Model(outer, keras.layers.Dense(4, activation="softmax", name="probabilities")(h))


@pytest.fixture(scope="module")
def nested(tmp_path_factory) -> str:
    """The nested MobileNetV2 classifier as a SavedModel."""
    path = str(tmp_path_factory.mktemp("models") / "nested")
    models.save_model(_nested_classifier(), path)
    return path


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("models") / "mini")
    models.save_model(_mini_classifier(), path)
    return path


def test_flatten_inlines_the_layers_and_keeps_the_function():
    model = _nested_classifier()
    flat = common.flatten_nested(model)
    assert not any(isinstance(la, keras.Model) for la in flat.layers)
    names = [la.name for la in flat.layers]
    assert "block_1_depthwise" in names and "probabilities" in names
    assert len(names) == len(set(names))
    assert models.count_params(flat) == models.count_params(model)
    x = np.random.default_rng(0).random((3, *SHAPE), np.float32) * 255
    np.testing.assert_allclose(flat.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    plain = models.build_model(models.ModelConfig(arch="cnn"), (8, 8, 1), 4)
    assert common.flatten_nested(plain) is plain


def test_flatten_renames_a_clashing_inner_layer():
    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")], name="inner")
    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(2, name="dense_out")(
        inner(keras.layers.Dense(4, name="dense")(inputs))
    )
    model = keras.Model(inputs, outputs)
    flat = common.flatten_nested(model)
    names = [la.name for la in flat.layers]
    assert len(names) == len(set(names)) == 4
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(flat.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_prune_reaches_the_backbone_and_its_depthwise_kernels(nested, data, tmp_path):
    result = prune.prune_model(
        nested,
        data,
        str(tmp_path / "pruned"),
        prune.PruneConfig(target_sparsity=0.5, schedule="constant", epochs=1, batch_size=32),
    )
    depthwise = [n for n in result.pruned_layers if "depthwise" in n]
    assert len(depthwise) > 10
    assert result.sparsity == pytest.approx(0.5, abs=0.02)
    for n in depthwise:
        assert result.layer_sparsity[n] == pytest.approx(0.5, abs=0.05)
    assert result.pruned_param_fraction > 0.8
    saved = models.load_model(result.model_path)
    zeros = np.mean(saved.get_layer("block_3_depthwise").get_weights()[0] == 0)
    assert zeros == pytest.approx(0.5, abs=0.05)


def test_prune_2_4_on_depthwise(mini, data, tmp_path):
    result = prune.prune_model(
        mini,
        data,
        str(tmp_path / "pruned24"),
        prune.PruneConfig(structured_2_4=True, schedule="constant", epochs=1, batch_size=32),
    )
    saved = models.load_model(result.model_path)
    w = saved.get_layer("b1_dw").get_weights()[0]  # (3, 3, channels, 1)
    blocks = (w.reshape(-1, w.shape[2]) == 0).reshape(-1, w.shape[2] // 4, 4).sum(-1)
    assert np.all(blocks >= 2)


def test_qat_annotates_the_nested_mobilenet_backbone():
    import tensorflow_model_optimization as tfmot

    flat = common.flatten_nested(_nested_classifier())
    annotated, quantized, kept, reasons = qat.annotate(flat)
    assert kept == ["scale"] and "registry" in reasons["scale"]
    assert {"block_1_depthwise", "block_1_depthwise_BN", "block_1_project"} <= set(quantized)
    with tfmot.quantization.keras.quantize_scope():
        qmodel = tfmot.quantization.keras.quantize_apply(
            annotated, tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
        )
    assert qat.quantized_fraction(qmodel, models.count_params(flat)) > 0.99


def test_qat_quantizes_the_backbone(mini, data, tmp_path):
    out = str(tmp_path / "qat.tflite")
    result = qat.qat_model(mini, data, out, qat.QatConfig(epochs=1, batch_size=32))
    assert result.quantized_param_fraction > 0.99
    assert {"b0_dw", "b0_dw_bn", "b1_add"} <= set(result.quantized_layers)  # BN folded
    assert result.float_layers == ["scale"]
    assert "registry" in result.float_reasons["scale"]
    assert result.size_bytes > 0


def test_lowrank_factorizes_pointwise_convs(mini, data, tmp_path):
    result = lowrank.factorize_model(
        mini, data, str(tmp_path / "lowrank"), lowrank.LowRankConfig(energy=0.5, epochs=0)
    )
    assert {"b0_expand", "b1_expand"} <= set(result.layers)
    assert result.params_after < result.params_before
    assert 0 < result.factorized_param_fraction < 1
