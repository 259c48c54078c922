"""LiteRT Quantizer recipes on the tiny CNN: dtypes read from the flatbuffer, accuracy against
the float model, the mixed-precision rule, selective float fallback, recipes that cannot apply,
and the LiteRT interpreter beside TF's converter in one process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tfopt._keras import tf
from tfopt.compression import litert_model
from tfopt.compression import litert_quantizer as lq
from tfopt.compression import tflite as tflite_lib
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError, ModelError
from tfopt.evaluation import runtime
from tfopt.evaluation.runtime import Predictor

# Accuracy points (test split, 356 examples: one example = 0.28 points) a recipe may lose
# against the float model: int4 weights are coarser than int8.
MAX_DROP = {"int8": 2.0, "int16x8": 2.0, "dynamic": 2.0, "int4_weight_only": 4.0, "mixed": 3.0}


@pytest.fixture(scope="module")
def float_tflite(tmp_path_factory, cnn):
    out = tmp_path_factory.mktemp("litert") / "float.tflite"
    tflite_lib.convert_to_tflite(cnn, None, str(out), tflite_lib.TFLiteConfig(mode="float32"))
    return str(out)


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, float_tflite, digits_dir):
    out = tmp_path_factory.mktemp("litert_q")
    return {
        recipe: lq.quantize_tflite(
            float_tflite,
            digits_dir,
            str(out / f"{recipe}.tflite"),
            lq.LiteRTQuantizeConfig(recipe=recipe, report_tensors=100),
        )
        for recipe in lq.RECIPES
    }


def _test_accuracy(path: str, digits_dir: str) -> float:
    x, y = input_pipeline.load_arrays(schema.load_info(digits_dir), "test")
    return float(np.mean(Predictor(path, "tflite").predict(x).argmax(1) == y)) * 100.0


def test_every_recipe_puts_its_dtypes_in_the_flatbuffer(quantized):
    types = {r: lq.type_counts(res.path) for r, res in quantized.items()}
    assert all(types[r] == res.tensor_types for r, res in quantized.items())
    # static: integer activations throughout (no float tensor left), int8 weights
    assert types["int8"]["INT8"] and not types["int8"]["FLOAT32"] and not types["int8"]["INT16"]
    assert types["int16x8"]["INT16"] and types["int16x8"]["INT8"]
    assert not types["int16x8"]["FLOAT32"]
    # dynamic: int8 weights, float activations; int4 weight-only: int4 weights, no int8
    assert types["dynamic"]["INT8"] and types["dynamic"]["FLOAT32"] and not types["dynamic"]["INT4"]
    assert types["int4_weight_only"]["INT4"] and not types["int4_weight_only"]["INT8"]
    assert types["int4_weight_only"]["FLOAT32"]


def test_sizes_follow_the_bit_widths(quantized):
    size = {r: res.size_bytes for r, res in quantized.items()}
    float_size = quantized["int8"].float_size_bytes
    assert size["dynamic"] < 0.4 * float_size  # conv/FC weights dominate the file
    assert size["int4_weight_only"] < 0.8 * size["dynamic"]
    # mixed: int4 or int8 weights, each dequantized explicitly (a few more tensors than dynamic)
    assert size["int4_weight_only"] <= size["mixed"] < 0.5 * float_size


def test_accuracy_against_the_float_model_within_bounds(quantized, float_tflite, digits_dir):
    base = _test_accuracy(float_tflite, digits_dir)
    assert base > 80.0
    for recipe, res in quantized.items():
        assert _test_accuracy(res.path, digits_dir) >= base - MAX_DROP[recipe], recipe


def test_int16_activations_are_closer_to_float_than_int8(quantized):
    def output_snr(res):
        return {t["name"]: t["snr_db"] for t in res.worst_tensors}

    int8, int16 = output_snr(quantized["int8"]), output_snr(quantized["int16x8"])
    shared = set(int8) & set(int16)
    assert shared
    assert min(int16[n] for n in shared) > min(int8[n] for n in shared)


def _weight_ops(res) -> dict[str, float]:
    """SNR (dB) of the outputs of the conv / dense ops (those with weights)."""
    return {
        t["name"]: t["snr_db"]
        for t in res.worst_tensors
        if "Conv2D" in t["name"] or "MatMul" in t["name"]
    }


def test_mixed_gives_int8_exactly_to_the_ops_below_the_threshold(
    tmp_path, quantized, float_tflite, digits_dir
):
    int4 = _weight_ops(quantized["int4_weight_only"])
    assert len(int4) == 4  # conv1, conv2, dense1, logits
    low, high = min(int4.values()), max(int4.values())
    assert high > low + 1.0
    threshold = (low + high) / 2
    res = lq.quantize_tflite(
        float_tflite,
        digits_dir,
        str(tmp_path / "mixed.tflite"),
        lq.LiteRTQuantizeConfig(recipe="mixed", mixed_min_snr_db=threshold, max_float_ops=0),
    )
    # the rule: int8 weights for an op whose output SNR under int4 is below the threshold
    assert set(res.int8_ops) == {n for n, snr in int4.items() if snr < threshold}
    assert res.tensor_types["INT4"] == len(int4) - len(res.int8_ops) > 0
    assert res.tensor_types["INT8"] == len(res.int8_ops) > 0
    assert quantized["int4_weight_only"].size_bytes < res.size_bytes


def test_mixed_with_every_op_int8_is_still_a_variant(tmp_path, float_tflite, digits_dir):
    res = lq.quantize_tflite(
        float_tflite,
        digits_dir,
        str(tmp_path / "mixed8.tflite"),
        lq.LiteRTQuantizeConfig(recipe="mixed", mixed_min_snr_db=190.0),
    )
    assert res.tensor_types["INT8"] == 4 and not res.tensor_types.get("INT4")
    assert res.int8_ops == litert_model.weight_op_names(Path(float_tflite).read_bytes())
    assert len(res.int8_ops) == 4 and all("Conv2D" in n or "MatMul" in n for n in res.int8_ops)


def test_selective_fallback_keeps_where_the_error_enters_in_float(
    tmp_path, quantized, float_tflite, digits_dir
):
    before = quantized["dynamic"]
    snr = {t["name"]: t["snr_db"] for t in before.worst_tensors}
    floor = max(_weight_ops(before).values()) + 1.0  # every weight op is below it
    res = lq.quantize_tflite(
        float_tflite,
        digits_dir,
        str(tmp_path / "dyn_fallback.tflite"),
        lq.LiteRTQuantizeConfig(
            recipe="dynamic", min_snr_db=floor, max_float_ops=1, report_tensors=100
        ),
    )
    assert len(res.float_ops) == 1
    kept = res.float_ops[0]
    assert kept in _weight_ops(before)  # an op whose weights were quantized, not a bystander
    assert any(kept in note for note in res.notes)
    after = {t["name"]: t["snr_db"] for t in res.worst_tensors}
    assert after[kept] > snr[kept]  # in float, it no longer adds error of its own
    # one op fewer with int8 weights than the plain dynamic recipe, and it still runs
    assert res.tensor_types["INT8"] == before.tensor_types["INT8"] - 1
    assert _test_accuracy(res.path, digits_dir) > 80.0


@pytest.fixture(scope="module")
def no_weights_tflite(tmp_path_factory):
    """A float model with no weight-bearing op (elementwise, reshape, softmax)."""

    class Elementwise(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x")])
        def __call__(self, x):
            y = tf.nn.relu(tf.reshape(x, [-1, 64]) * 0.5 + 0.1)
            return {"probabilities": tf.nn.softmax(y[:, :10])}

    out = tmp_path_factory.mktemp("noweights")
    module = Elementwise()
    tf.saved_model.save(module, str(out / "sm"), signatures={"serving_default": module.__call__})
    content = tf.lite.TFLiteConverter.from_saved_model(str(out / "sm")).convert()
    (out / "m.tflite").write_bytes(content)
    return str(out / "m.tflite")


@pytest.mark.parametrize("recipe", ["int4_weight_only", "mixed", "dynamic"])
def test_a_recipe_without_a_supporting_op_is_rejected_with_the_reason(
    tmp_path, no_weights_tflite, digits_dir, recipe
):
    out = tmp_path / "q.tflite"
    with pytest.raises(
        ModelError, match=rf"recipe '{recipe}' does not apply: no INT[48] .*SOFTMAX"
    ):
        lq.quantize_tflite(no_weights_tflite, digits_dir, str(out), lq.LiteRTQuantizeConfig(recipe))
    assert not out.exists()


def test_static_int8_applies_to_the_elementwise_model(tmp_path, no_weights_tflite, digits_dir):
    res = lq.quantize_tflite(
        no_weights_tflite, digits_dir, str(tmp_path / "q.tflite"), lq.LiteRTQuantizeConfig("int8")
    )
    assert res.tensor_types["INT8"] and not res.tensor_types.get("FLOAT32")


def test_bad_input_fails_before_any_work(tmp_path, quantized, float_tflite, digits_dir):
    out = str(tmp_path / "q.tflite")
    with pytest.raises(ModelError, match="not a float32 TFLite model .*INT8"):
        lq.quantize_tflite(quantized["int8"].path, digits_dir, out, lq.LiteRTQuantizeConfig())
    with pytest.raises(ModelError, match="not found"):
        lq.quantize_tflite(
            str(tmp_path / "none.tflite"), digits_dir, out, lq.LiteRTQuantizeConfig()
        )
    (tmp_path / "junk.tflite").write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ModelError, match="not a TFLite flatbuffer"):
        lq.quantize_tflite(
            str(tmp_path / "junk.tflite"), digits_dir, out, lq.LiteRTQuantizeConfig()
        )
    with pytest.raises(ConfigError, match="dataset_dir"):
        lq.quantize_tflite(float_tflite, None, out, lq.LiteRTQuantizeConfig())

    class Flat(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 5], tf.float32, name="x")])
        def __call__(self, x):
            return {"probabilities": tf.nn.softmax(x)}

    module = Flat()
    tf.saved_model.save(
        module, str(tmp_path / "flat"), signatures={"serving_default": module.__call__}
    )
    flat = tmp_path / "flat.tflite"
    flat.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "flat")).convert())
    with pytest.raises(ModelError, match=r"takes inputs of shape \(5,\).*\(8, 8, 1\)"):
        lq.quantize_tflite(str(flat), digits_dir, out, lq.LiteRTQuantizeConfig())
    with pytest.raises(ConfigError, match=r"LiteRTQuantizeConfig.recipe='int3' .*'int8'"):
        lq.LiteRTQuantizeConfig(recipe="int3")
    with pytest.raises(ConfigError, match="max_accuracy_drop"):
        lq.LiteRTQuantizeConfig(max_accuracy_drop=-2.0)  # -1 turns the check off
    assert not os.path.exists(out)


def test_accuracy_check_records_the_drop(tmp_path, float_tflite, digits_dir):
    res = lq.quantize_tflite(
        float_tflite,
        digits_dir,
        str(tmp_path / "q.tflite"),
        lq.LiteRTQuantizeConfig("int8", max_accuracy_drop=MAX_DROP["int8"]),
    )
    assert res.float_accuracy > 0.8
    assert res.accuracy_drop == pytest.approx((res.float_accuracy - res.accuracy) * 100.0)
    assert res.accuracy_drop <= MAX_DROP["int8"]


def test_litert_interpreter_runs_and_matches_tf_lite(monkeypatch, float_tflite, digits_dir):
    assert runtime.runtime_name() == "ai_edge_litert"
    x, _ = input_pipeline.load_arrays(schema.load_info(digits_dir), "test", limit=64)
    litert = Predictor(float_tflite, "tflite").predict(x)
    monkeypatch.setenv("TFOPT_TFLITE_RUNTIME", "tf.lite")
    assert runtime.runtime_name() == "tf.lite"
    np.testing.assert_allclose(Predictor(float_tflite, "tflite").predict(x), litert, atol=1e-5)
    monkeypatch.setenv("TFOPT_TFLITE_RUNTIME", "tflite-micro")
    with pytest.raises(ConfigError, match="TFOPT_TFLITE_RUNTIME='tflite-micro'"):
        runtime.runtime_name()


def test_converter_int8_still_calibrates_beside_litert(tmp_path, quantized, cnn, digits_dir):
    """LiteRT Quantizer and its interpreter are loaded (the fixtures above): TF's converter
    still calibrates int8 in the same process (the combination the Makefile installs)."""
    import sys

    assert "litert_quantizer" in sys.modules and "ai_edge_litert.interpreter" in sys.modules
    res = tflite_lib.convert_to_tflite(
        cnn,
        digits_dir,
        str(tmp_path / "conv_int8.tflite"),
        tflite_lib.TFLiteConfig(mode="int8", representative_samples=20, max_accuracy_drop=-1.0),
    )
    assert res.mode == "int8" and res.fallback == ""
    assert lq.type_counts(res.path)["INT8"]
