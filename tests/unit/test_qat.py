"""Quantization-aware training and pruning-preserving QAT to int8 TFLite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tfopt._keras import keras, tf
from tfopt.compression import qat
from tfopt.compression import tflite as tflite_lib
from tfopt.errors import ConfigError, ModelError
from tfopt.training import models

from helpers.compression import accuracy, assert_unchanged, pruned_cnn, snapshot


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory, digits_dir, cnn):
    before = snapshot(cnn)
    out = str(tmp_path_factory.mktemp("qat") / "qat.tflite")
    # one epoch is too few: the fake-quant shock costs 1-4 points that epochs 2-3 win back
    result = qat.qat_model(cnn, digits_dir, out, qat.QatConfig(epochs=3, batch_size=32))
    return result, before


def _assert_plain_int8(path: str) -> None:
    """An int8 TFLite model: integer kernels, no fake-quant or wrapper leftovers."""
    content = Path(path).read_bytes()
    ops = tflite_lib.op_types(content)
    assert "FULLY_CONNECTED" in ops and "CONV_2D" in ops
    assert not [o for o in ops if "FAKE_QUANT" in o or o.startswith("FLEX")], ops
    weights = _weight_tensors(path)
    assert len(weights) == 4 and all(t["dtype"] == np.int8 for t in weights)
    assert tflite_lib.float_ops_in_int8(content) == []


def _weight_tensors(path: str) -> list[dict]:
    """The weight input of every CONV_2D / FULLY_CONNECTED op."""
    interp = tf.lite.Interpreter(model_path=path)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    return [
        {**tensors[op["inputs"][1]], "value": interp.get_tensor(op["inputs"][1])}
        for op in interp._get_ops_details()
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")
    ]


def test_qat_writes_an_int8_model_that_keeps_accuracy(qat_run, digits_dir, cnn):
    result, _ = qat_run
    _assert_plain_int8(result.path)
    assert result.float_layers == ["normalize"]  # tfmot cannot annotate Normalization
    assert {"conv1", "conv2", "dense1", "logits"} <= set(result.quantized_layers)
    assert (
        accuracy(result.path, "tflite", digits_dir)
        >= accuracy(cnn, "saved_model", digits_dir) - 0.03
    )


def test_input_model_is_unchanged_by_qat(qat_run, cnn):
    _, before = qat_run
    assert_unchanged(cnn, before)


@pytest.mark.slow
def test_pruning_preserving_qat_keeps_the_zeros(tmp_path_factory, tmp_path, digits_dir):
    pruned = pruned_cnn(tmp_path_factory, digits_dir)
    before = snapshot(pruned)
    result = qat.qat_model(
        pruned,
        digits_dir,
        str(tmp_path / "pqat.tflite"),
        qat.QatConfig(preserve_sparsity=True, epochs=1, batch_size=32),
    )
    _assert_plain_int8(result.path)
    assert result.sparsity_before > 0.6
    assert result.sparsity_after == pytest.approx(result.sparsity_before, abs=1e-3)
    # the int8 weights of dense1 keep (about) the pruned share of zeros
    dense = [t for t in _weight_tensors(result.path) if tuple(t["shape"]) == (32, 256)]
    assert len(dense) == 1
    assert np.mean(dense[0]["value"] == 0) >= 0.74
    assert_unchanged(pruned, before)


def test_model_without_quantizable_layer_fails_before_training(tmp_path, digits_dir):
    inputs = keras.Input((8, 8, 1), name="x")
    h = keras.layers.Normalization(axis=None, mean=0.0, variance=1.0)(inputs)
    h = keras.layers.Reshape((64,))(h)
    out = keras.layers.Lambda(lambda t: tf.nn.softmax(t[:, :10]), name="probabilities")(h)
    path = str(tmp_path / "m")
    models.save_model(keras.Model(inputs, out), path)
    with pytest.raises(ModelError, match="no layer quantization-aware training can quantize"):
        qat.qat_model(path, digits_dir, str(tmp_path / "o.tflite"))
    assert not (tmp_path / "o.tflite").exists()


@pytest.mark.parametrize("kwargs", [{"epochs": 0}, {"learning_rate": 0.0}])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ConfigError):
        qat.QatConfig(**kwargs)
