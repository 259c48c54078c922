"""Every TFLite mode from a SavedModel, int8 I/O, and the int8 fallbacks (recorded, not fatal)."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt._keras import keras, tf
from tfopt.compression import tflite as tflite_lib
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError
from tfopt.evaluation.runtime import Predictor
from tfopt.training import models

from helpers.compression import accuracy


@pytest.fixture(scope="module")
def converted(tmp_path_factory, digits_dir, cnn):
    out = tmp_path_factory.mktemp("tflite")
    results = {}
    for mode in tflite_lib.MODES:
        results[mode] = tflite_lib.convert_to_tflite(
            cnn,
            digits_dir,
            str(out / f"{mode}.tflite"),
            tflite_lib.TFLiteConfig(mode=mode, max_accuracy_drop=-1.0),
        )
    return results


def test_every_mode_converts_with_the_expected_size(converted):
    size = {m: r.size_bytes for m, r in converted.items()}
    assert size["float16"] <= 0.6 * size["float32"]
    assert size["dynamic"] <= 0.45 * size["float32"]
    assert size["int8"] <= 0.45 * size["float32"]
    assert all(r.mode == r.requested_mode for r in converted.values())


def test_float16_gives_the_same_argmax_on_every_test_example(converted, digits_dir, cnn):
    x, _ = input_pipeline.load_arrays(schema.load_info(digits_dir), "test")
    ref = Predictor(cnn, "saved_model").predict(x).argmax(1)
    got = Predictor(converted["float16"].path, "tflite").predict(x).argmax(1)
    np.testing.assert_array_equal(got, ref)


def test_int8_keeps_accuracy_and_runs_integer_kernels(converted, digits_dir, cnn):
    base = accuracy(cnn, "saved_model", digits_dir)
    for mode in ("dynamic", "int8"):
        assert accuracy(converted[mode].path, "tflite", digits_dir) >= base - 0.02
    assert converted["int8"].float_ops == []
    interp = tf.lite.Interpreter(model_path=converted["int8"].path)
    fc = [
        t
        for t in interp.get_tensor_details()
        if "dense1" in t["name"] and t["name"].endswith("MatMul")
    ]
    assert fc and all(t["dtype"] == np.int8 for t in fc)


def test_int8_io_and_representative_samples(tmp_path, digits_dir, cnn):
    res = tflite_lib.convert_to_tflite(
        cnn,
        digits_dir,
        str(tmp_path / "io.tflite"),
        tflite_lib.TFLiteConfig(
            mode="int8", int8_io=True, representative_samples=20, max_accuracy_drop=-1.0
        ),
    )
    interp = tf.lite.Interpreter(model_path=res.path)
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    assert (
        accuracy(res.path, "tflite", digits_dir) >= accuracy(cnn, "saved_model", digits_dir) - 0.03
    )


def test_accuracy_within_the_limit_is_recorded(tmp_path, digits_dir, cnn):
    res = tflite_lib.convert_to_tflite(
        cnn, digits_dir, str(tmp_path / "ok.tflite"), tflite_lib.TFLiteConfig(max_accuracy_drop=5.0)
    )
    assert res.mode == "int8" and res.fallback == ""
    assert res.accuracy_drop is not None and res.accuracy_drop <= 5.0
    assert any("drop" in n for n in res.notes)


def _outlier_model(cnn: str, path: str) -> str:
    """Same predictions in float, but one dense1 unit with huge weights (feeding nothing)
    blows up the per-tensor int8 ranges of dense1: int8 accuracy collapses."""
    model = models.load_model(cnn)
    kernel, bias = model.get_layer("dense1").get_weights()
    kernel[:, 0] = 50.0
    model.get_layer("dense1").set_weights([kernel, bias])
    lk, lb = model.get_layer("logits").get_weights()
    lk[0, :] = 0.0
    model.get_layer("logits").set_weights([lk, lb])
    models.save_model(model, path)
    return path


@pytest.fixture(scope="module")
def outlier(tmp_path_factory, cnn):
    return _outlier_model(cnn, str(tmp_path_factory.mktemp("outlier") / "m"))


def test_accuracy_drop_over_the_limit_falls_back_to_selective(tmp_path, digits_dir, outlier):
    res = tflite_lib.convert_to_tflite(
        outlier,
        digits_dir,
        str(tmp_path / "sel.tflite"),
        tflite_lib.TFLiteConfig(max_accuracy_drop=1.0),
    )
    assert res.mode == "int8" and res.fallback == "selective"
    assert res.denylisted and any("dense1" in n for n in res.denylisted)
    assert any("> 1" in n for n in res.notes)  # the first drop, recorded
    assert res.accuracy_drop <= 1.0
    assert (
        accuracy(res.path, "tflite", digits_dir)
        >= accuracy(outlier, "saved_model", digits_dir) - 0.02
    )


def test_accuracy_drop_over_the_limit_falls_back_to_float16(tmp_path, digits_dir, outlier):
    res = tflite_lib.convert_to_tflite(
        outlier,
        digits_dir,
        str(tmp_path / "f16.tflite"),
        tflite_lib.TFLiteConfig(max_accuracy_drop=1.0, fallback="float16"),
    )
    assert res.mode == "float16" and res.requested_mode == "int8"
    assert res.fallback == "float16" and res.accuracy_drop <= 0.5
    assert "fell back to float16" in res.notes


def test_fallback_none_keeps_int8_and_records_the_drop(tmp_path, digits_dir, outlier):
    res = tflite_lib.convert_to_tflite(
        outlier,
        digits_dir,
        str(tmp_path / "i8.tflite"),
        tflite_lib.TFLiteConfig(max_accuracy_drop=1.0, fallback="none"),
    )
    assert res.mode == "int8" and res.accuracy_drop > 1.0
    assert any("kept int8" in n for n in res.notes)


def _erf_model(path: str) -> str:
    inputs = keras.Input((8, 8, 1), name="x")
    h = keras.layers.Dense(8)(keras.layers.Flatten()(inputs))
    h = keras.layers.Lambda(lambda t: tf.math.erf(t))(h)  # no TFLite builtin kernel
    out = keras.layers.Activation("softmax", name="probabilities")(keras.layers.Dense(10)(h))
    models.save_model(keras.Model(inputs, out), path)
    return path


def test_unconvertible_op_tries_every_fallback_then_raises_conversion_error(tmp_path, digits_dir):
    path = _erf_model(str(tmp_path / "erf"))
    with pytest.raises(tflite_lib.ConversionError) as info:
        tflite_lib.convert_to_tflite(
            path,
            digits_dir,
            str(tmp_path / "erf.tflite"),
            tflite_lib.TFLiteConfig(max_accuracy_drop=-1.0),
        )
    text = str(info.value)
    assert "int8 conversion failed" in text and "float kernels failed" in text
    assert "float16 fallback failed" in text and "Erf" in text
    assert not (tmp_path / "erf.tflite").exists()


def test_op_without_int8_kernel_is_kept_in_float_and_noted(tmp_path, digits_dir):
    inputs = keras.Input((8, 8, 1), name="x")
    h = keras.layers.Dense(8)(keras.layers.Flatten()(inputs))
    h = keras.layers.Lambda(lambda t: tf.math.cos(t))(h)
    out = keras.layers.Activation("softmax", name="probabilities")(keras.layers.Dense(10)(h))
    models.save_model(keras.Model(inputs, out), str(tmp_path / "cos"))
    res = tflite_lib.convert_to_tflite(
        str(tmp_path / "cos"),
        digits_dir,
        str(tmp_path / "cos.tflite"),
        tflite_lib.TFLiteConfig(max_accuracy_drop=-1.0),
    )
    assert res.float_ops == ["COS"]
    assert any("COS" in n for n in res.notes)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "int4"},
        {"mode": "float16", "int8_io": True},
        {"representative_samples": 0},
        {"max_accuracy_drop": -2.0},  # -1 turns the check off
        {"fallback": "magic"},
    ],
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ConfigError):
        tflite_lib.TFLiteConfig(**kwargs)
