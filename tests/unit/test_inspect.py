"""Pre-flight report: per-layer answers match what the techniques then do."""

from __future__ import annotations

import json

import pytest

from tfopt import registry
from tfopt._keras import keras, tf
from tfopt.compression import inspect, lowrank
from tfopt.errors import ConfigError
from tfopt.training import models


def _nested_mobilenet() -> keras.Model:
    base = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None
    )
    inputs = keras.Input((32, 32, 3), name="x")
    h = keras.layers.GlobalAveragePooling2D(name="pool")(base(inputs))
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax", name="probabilities")(h))


def test_nested_mobilenet_per_layer_answers():
    model = _nested_mobilenet()
    report = inspect.inspect_model(model, convert=False)
    json.dumps(report)  # JSON-able as it is
    assert report["nested_models"] == [model.layers[1].name]
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["block_1_depthwise"]["prunable"] and rows["block_1_depthwise"]["qat"]
    assert rows["block_1_depthwise_BN"]["qat"]
    assert rows["block_1_depthwise_BN"]["qat_reason"] == "folded into block_1_depthwise"
    assert not rows["pool"]["prunable"] and rows["pool"]["prune_reason"].startswith("no kernel")
    assert rows["probabilities"]["prune_reason"].startswith("kept dense")  # keep_dense=auto
    assert not rows["block_1_depthwise"]["factorizable"]
    # every technique with a planner answers for every layer, as the flat keys do
    planned = {t.name for t in registry.techniques() if t.plan}
    assert {"prune", "lowrank", "qat"} <= planned
    for row in rows.values():
        assert set(row["techniques"]) == planned
        assert row["techniques"]["prune"] == {
            "applies": row["prunable"],
            "reason": row["prune_reason"],
        }
        assert row["techniques"]["qat"]["applies"] == row["qat"]
        assert row["techniques"]["lowrank"]["applies"] == row["factorizable"]
    assert set(report["coverage"]["techniques"]) == planned
    assert (
        report["coverage"]["techniques"]["lowrank"]["layers"]
        == (report["coverage"]["factorizable_layers"])
    )
    # the saving is what low-rank's own plan gives at the same energy, on the same weights
    # (a clone_model re-initializes them, and a layer near the energy threshold then differs)
    layer_plan = lowrank.plan(model.layers[1], lowrank.LowRankConfig(energy=0.9))
    assert set(report["coverage"]["factorizable_layers"]) - {"probabilities"} <= set(layer_plan)
    assert report["coverage"]["qat_param_fraction"] > 0.99
    assert 0.8 < report["coverage"]["prunable_param_fraction"] < 1.0
    assert report["params"] == models.count_params(model)
    assert report["tflite"] is None
    text = inspect.format_inspect(report)
    assert "block_1_depthwise" in text and "nested models (flattened)" in text


def test_int8_conversion_lists_ops_without_int8_kernels(tmp_path):
    inputs = keras.Input((8, 8, 1), name="x")
    h = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    h = tf.math.sin(h)  # SIN has a float kernel only
    h = keras.layers.Flatten()(h)
    model = keras.Model(
        inputs, keras.layers.Dense(3, activation="softmax", name="probabilities")(h)
    )
    path = str(tmp_path / "m")
    models.save_model(model, path)
    report = inspect.inspect_model(path)
    t = report["tflite"]
    assert "SIN" in t["float_ops_in_int8"] and t["int8_kernels"]["SIN"] is False
    assert t["int8_kernels"]["CONV_2D"] is True
    assert t["int8_bytes"] < t["float32_bytes"]
    rows = {r["name"]: r for r in report["layers"]}
    assert (
        not rows["tf.math.sin"]["qat"] and "raw TensorFlow op" in rows["tf.math.sin"]["qat_reason"]
    )
    assert "ops left in float in the int8 model: SIN" in inspect.format_inspect(report)


def test_family_int8_size_and_kernels():
    model = models.build_model(models.ModelConfig(arch="mobilenet_v2", alpha=0.35), (28, 28, 1), 10)
    t = inspect.inspect_model(model)["tflite"]
    assert t["float_ops_in_int8"] == []
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "RESIZE_BILINEAR"} <= set(t["int8_ops"])
    assert t["int8_bytes"] < 0.45 * t["float32_bytes"]


def test_undefined_input_dimension_needs_input_shape():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(
        inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs))
    )
    with pytest.raises(ConfigError, match="give every dimension"):
        inspect.inspect_model(model, convert=False)
    assert inspect.inspect_model(model, (16, 16, 3), convert=False)["input_shape"] == [16, 16, 3]
