"""Pre-flight report: per-layer answers match what the techniques then do."""

from __future__ import annotations

import json

import pytest

from tfopt import registry
from tfopt._keras import keras, tf
from tfopt.compression import channel_prune as cp
from tfopt.compression import channels, inspect, lowrank
from tfopt.errors import ConfigError, ModelError
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


def _residual() -> keras.Model:
    """conv_a -> BN -> relu and a 1x1 conv_b from the input, joined by an Add (one group),
    then conv_c, global pooling and the output layer."""
    x = keras.Input((8, 8, 3), name="x")
    a = keras.layers.Conv2D(16, 3, padding="same", name="conv_a")(x)
    a = keras.layers.ReLU(name="relu")(keras.layers.BatchNormalization(name="bn")(a))
    b = keras.layers.Conv2D(16, 1, name="conv_b")(x)
    h = keras.layers.Add(name="add")([a, b])
    h = keras.layers.Conv2D(24, 3, padding="same", name="conv_c")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(x, keras.layers.Dense(10, activation="softmax", name="out")(h))


def test_channel_preflight_flops_groups_and_the_target():
    model = _residual()
    settings = {"channel_prune": {"flops_fraction": 0.4, "round_to": 4}}
    report = inspect.inspect_model(model, convert=False, settings=settings)
    json.dumps(report)
    rows = {r["name"]: r for r in report["layers"]}
    section = report["channel_prune"]
    # multiply-adds per example: 8x8 positions x 3x3x3x16, 1x1x3x16, 3x3x16x24; 24x10
    assert rows["conv_a"]["flops"] == 64 * 9 * 3 * 16 and rows["conv_b"]["flops"] == 64 * 3 * 16
    assert rows["conv_c"]["flops"] == 64 * 9 * 16 * 24 and rows["out"]["flops"] == 240
    assert sum(r["flops"] for r in rows.values()) == section["flops_before"] == 252_144
    # the Add joins both branches (and what runs per channel between): one group, named by
    # its first producer
    for name in ("conv_a", "bn", "relu", "conv_b", "add"):
        assert rows[name]["channel_group"] == "conv_a" and rows[name]["channels"] == 16
    assert rows["conv_c"]["channel_group"] == "conv_c" and rows["out"]["channel_group"] == "out"
    assert section["groups"]["conv_a"]["layers"] == ["conv_a", "conv_b"]
    # after the target: what the technique's own choice gives, before any training
    config = cp.ChannelPruneConfig(flops_fraction=0.4, round_to=4)
    groups = channels.trace(model)
    ratio, keep = cp.choose_channels(model, groups, config)
    after = cp.model_flops(model, groups, keep)
    assert section["flops_after"] == after == sum(r["flops_after"] for r in rows.values())
    assert section["flops_removed"] == pytest.approx(1 - after / 252_144)
    assert section["flops_removed"] >= 0.4 and section["keep_ratio"] == ratio
    assert section["params_before"] == models.count_params(model)
    assert section["params_after"] == models.count_params(channels.rebuild(model, groups, keep))
    assert section["params_after"] < section["params_before"]
    kept = rows["conv_a"]["channels_kept"]
    assert kept == rows["conv_b"]["channels_kept"] == rows["add"]["channels_kept"]
    assert kept == section["groups"]["conv_a"]["kept"] < 16 and kept % 4 == 0
    assert rows["out"]["channels_kept"] == 10 and section["groups"]["out"]["frozen"]
    assert section["reason"] is None
    text = inspect.format_inspect(report)
    assert "channels" in text.splitlines()[0] and "group" in text.splitlines()[0]
    assert (
        f"channel_prune at flops_fraction 0.4: FLOPs 252k -> {inspect.channel_preflight.si(after)}"
        in text
    )
    assert f"conv_a 16->{kept} (conv_a, conv_b)" in text


def test_channel_preflight_on_a_model_with_nothing_prunable_gives_the_reason():
    x = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(16, 3, name="c")(x)
    h = keras.layers.Reshape((-1,), name="r")(h)
    model = keras.Model(x, keras.layers.Dense(10, activation="softmax", name="out")(h))
    report = inspect.inspect_model(model, convert=False)
    section = report["channel_prune"]
    with pytest.raises(ModelError) as refused:
        cp.choose_channels(model, channels.trace(model), cp.ChannelPruneConfig())
    assert section["reason"] == str(refused.value) and "Reshape" in section["reason"]
    assert section["flops_after"] is None and section["params_after"] is None
    rows = {r["name"]: r for r in report["layers"]}
    # 6x6 positions x 3x3x1x16, then 576 x 10
    assert rows["c"]["flops"] == 36 * 9 * 16 and rows["out"]["flops"] == 5760
    assert section["flops_before"] == 36 * 9 * 16 + 5760
    assert rows["c"]["channels_kept"] is None and rows["c"]["channel_group"] == "c"
    text = inspect.format_inspect(report)
    assert "channel_prune at flops_fraction 0.5: FLOPs 10.9k; channel_prune: no layer" in text
