"""The LiteRT Quantizer component: metadata of a made variant, a recipe that does not apply
(skipped with the reason), a disabled variant."""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import dsl

from tfopt._keras import tf
from tfopt.components.compress import COMPONENTS
from tfopt.compression import tflite as tflite_lib
from tfopt.fsutil import read_json


@pytest.fixture(scope="module")
def float_model(tmp_path_factory, cnn):
    path = str(tmp_path_factory.mktemp("clitert") / "float.tflite")
    tflite_lib.convert_to_tflite(cnn, None, path, tflite_lib.TFLiteConfig(mode="float32"))
    return dsl.Model(uri=path, metadata={"variant": "tflite_float32", "format": "tflite"})


def test_mixed_variant_carries_its_precision_report(tmp_path, float_model, digits_dir):
    out = dsl.Model(uri=str(tmp_path / "mixed.tflite"))
    COMPONENTS["litert"].python_func(
        model=float_model,
        dataset=dsl.Dataset(uri=digits_dir),
        compressed_model=out,
        metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        variant="litert_mixed",
        recipe="mixed",
        max_accuracy_drop=5.0,
    )
    meta = out.metadata
    assert meta["skipped"] is False and meta["format"] == "tflite"
    assert meta["base"] == "tflite_float32" and meta["quantization"] == "litert_mixed"
    assert meta["tensor_types"].get("INT4", 0) + meta["tensor_types"].get("INT8", 0) == 4
    assert len(meta["int8_ops"]) == meta["tensor_types"].get("INT8", 0)
    assert meta["worst_tensors"] and meta["worst_tensors"][0]["snr_db"] < 200
    assert Path(out.path).stat().st_size > 0


def test_a_recipe_that_does_not_apply_skips_the_variant_with_the_reason(tmp_path, digits_dir):
    class Elementwise(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x")])
        def __call__(self, x):
            return {"probabilities": tf.nn.softmax(tf.reshape(x, [-1, 64])[:, :10] * 2.0)}

    module = Elementwise()
    tf.saved_model.save(
        module, str(tmp_path / "sm"), signatures={"serving_default": module.__call__}
    )
    (tmp_path / "m.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm")).convert()
    )
    out = dsl.Model(uri=str(tmp_path / "int4.tflite"))
    COMPONENTS["litert"].python_func(
        model=dsl.Model(uri=str(tmp_path / "m.tflite"), metadata={"variant": "tflite_float32"}),
        dataset=dsl.Dataset(uri=digits_dir),
        compressed_model=out,
        metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        variant="litert_int4",
        recipe="int4_weight_only",
    )
    assert out.metadata["skipped"] is True and out.metadata["not_applicable"] is True
    assert "does not apply: no INT4 tensor" in out.metadata["skip_reason"]
    assert read_json(out.path)["skip_reason"] == out.metadata["skip_reason"]


def test_disabled_variant_is_a_cheap_skip(tmp_path, float_model, digits_dir):
    out = dsl.Model(uri=str(tmp_path / "int8.tflite"))
    COMPONENTS["litert"].python_func(
        model=float_model,
        dataset=dsl.Dataset(uri=digits_dir),
        compressed_model=out,
        metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        variant="litert_int8",
        enabled=False,
    )
    assert out.metadata["skipped"] is True
    assert out.metadata["skip_reason"] == "disabled by pipeline parameter"
