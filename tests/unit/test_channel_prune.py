"""Structured pruning (issue 31): channel bookkeeping on a model with each coupling kind,
the FLOPs target, frozen groups with their reasons, and the technique on digits."""

import numpy as np
import pytest

from tfopt import registry
from tfopt._keras import keras
from tfopt.compression import channel_prune as cp
from tfopt.compression import channels, search
from tfopt.data import schema
from tfopt.errors import ConfigError, ModelError
from tfopt.training import models

from helpers.compression import accuracy


def coupled_model(flatten: bool = False) -> keras.Model:
    """conv -> BN -> relu6 -> depthwise -> BN, a residual Add with a 1x1 conv branch,
    a SeparableConv2D, a Concatenate, then GAP (or Flatten) -> Dense -> Dense."""
    x = keras.Input((8, 8, 3), name="x")
    a = keras.layers.Conv2D(16, 3, padding="same", name="conv_a")(x)
    a = keras.layers.BatchNormalization(name="bn_a")(a)
    a = keras.layers.ReLU(6.0, name="relu_a")(a)
    a = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(a)
    a = keras.layers.BatchNormalization(name="bn_dw")(a)
    b = keras.layers.Conv2D(16, 1, name="conv_b")(x)
    s = keras.layers.Add(name="add")([a, b])
    s = keras.layers.Activation("swish", name="swish")(s)
    c = keras.layers.SeparableConv2D(24, 3, padding="same", name="sep")(s)
    d = keras.layers.Conv2D(16, 1, name="conv_d")(s)
    cat = keras.layers.Concatenate(name="cat")([c, d])
    cat = keras.layers.MaxPooling2D(name="pool")(cat)
    if flatten:
        h = keras.layers.Flatten(name="flat")(cat)
    else:
        h = keras.layers.GlobalAveragePooling2D(name="gap")(cat)
    h = keras.layers.Dense(32, activation="relu", name="fc")(h)
    y = keras.layers.Dense(10, activation="softmax", name="out")(h)
    model = keras.Model(x, y)
    rng = np.random.default_rng(0)  # BatchNormalization statistics that are not the identity
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                 rng.uniform(0.5, 1.5, n)]
            )  # fmt: skip
    return model


def examples(n: int = 16) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 8, 8, 3)).astype(np.float32)


@pytest.mark.parametrize("flatten", [False, True])
def test_keeping_every_channel_rebuilds_the_same_function(flatten):
    model = coupled_model(flatten)
    groups = channels.trace(model)
    keep = {g: np.arange(groups.roots[g].size) for g in groups.prunable()}
    same = channels.rebuild(model, groups, keep)
    assert (
        np.max(np.abs(same.predict(examples(), verbose=0) - model.predict(examples(), verbose=0)))
        < 1e-5
    )


def test_the_groups_follow_the_couplings():
    groups = channels.trace(coupled_model())
    by_layer = {name: g for g, names in groups.producers.items() for name in names}
    # conv_a's channels run through BN, relu6, the depthwise conv and BN into the Add, which
    # joins them with conv_b's: one group of two producers
    assert by_layer["conv_a"] == by_layer["conv_b"]
    assert sorted(groups.producers[by_layer["conv_a"]]) == ["conv_a", "conv_b"]
    assert by_layer["sep"] != by_layer["conv_d"]  # Concatenate keeps its parts apart
    assert "out" in groups.roots[by_layer["out"]].frozen  # the classes stay
    assert set(groups.prunable()) == {by_layer[n] for n in ("conv_a", "sep", "conv_d", "fc")}


def test_channels_whose_filters_are_zero_come_out_without_changing_the_outputs():
    """Zero filters (and BN mapping them to 0) feed nothing downstream: taking them out of
    every coupled layer must leave the function as it was, while the model shrinks."""
    model = coupled_model(flatten=True)
    groups = channels.trace(model)
    by_layer = {name: g for g, names in groups.producers.items() for name in names}
    dead = {"sep": [1, 5, 7], "conv_d": [0, 2], "fc": [3, 4, 9]}
    for name, idx in dead.items():
        layer = model.get_layer(name)
        weights = layer.get_weights()
        weights[-2][..., idx] = 0.0  # kernel (pointwise for the separable conv)
        weights[-1][idx] = 0.0  # bias
        layer.set_weights(weights)
    keep = {
        by_layer[name]: np.setdiff1d(np.arange(groups.roots[by_layer[name]].size), idx)
        for name, idx in dead.items()
    }
    smaller = channels.rebuild(model, groups, keep)
    assert smaller.get_layer("sep").filters == 21 and smaller.get_layer("conv_d").filters == 14
    assert smaller.get_layer("fc").units == 29
    # Flatten after pooling: 4 x 4 positions x (21 + 14) channels into fc
    assert smaller.get_layer("fc").get_weights()[0].shape == (4 * 4 * 35, 29)
    assert models.count_params(smaller) < models.count_params(model)
    diff = np.abs(smaller.predict(examples(), verbose=0) - model.predict(examples(), verbose=0))
    assert np.max(diff) < 1e-5


def test_an_add_group_loses_the_same_channels_in_every_member():
    model = coupled_model()
    groups = channels.trace(model)
    _, keep = cp.choose_channels(
        model, groups, cp.ChannelPruneConfig(flops_fraction=0.4, round_to=4)
    )
    smaller = channels.rebuild(model, groups, keep)
    a, b = smaller.get_layer("conv_a").filters, smaller.get_layer("conv_b").filters
    assert a == b < 16 and a % 4 == 0
    assert smaller.get_layer("dw").get_weights()[0].shape[2] == a  # depthwise channels follow
    assert smaller.get_layer("bn_a").gamma.shape[0] == a


@pytest.mark.parametrize("target", [0.3, 0.5, 0.7])
def test_the_flops_target_is_reached(target):
    model = coupled_model()
    groups = channels.trace(model)
    _, keep = cp.choose_channels(
        model, groups, cp.ChannelPruneConfig(flops_fraction=target, round_to=1)
    )
    removed = 1 - cp.model_flops(model, groups, keep) / cp.model_flops(model, groups, {})
    assert target <= removed < target + 0.15


def test_a_model_with_nothing_prunable_is_refused_with_the_reasons():
    x = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(8, 3, name="c")(x)
    h = keras.layers.Reshape((-1,), name="r")(h)
    y = keras.layers.Dense(10, activation="softmax", name="out")(h)
    model = keras.Model(x, y)
    plan = cp.plan_layers(model, cp.ChannelPruneConfig())
    assert plan["c"] == (False, "r (Reshape) is not known to act per channel")
    with pytest.raises(ModelError, match=r"no layer to prune .*Reshape"):
        cp.choose_channels(model, channels.trace(model), cp.ChannelPruneConfig())


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        (
            {"flops_fraction": 0.99},
            r"flops_fraction=0.99 is not allowed: expected a number in \(0.0, 0.95\]",
        ),
        ({"flops_fraction": 0.0}, r"flops_fraction=0.0"),
        ({"teacher_weight": 1.5}, r"teacher_weight=1.5 is not allowed"),
        (
            {"importance": "taylor"},
            r"importance='taylor' is not allowed: expected one of 'l1', 'bn_gamma'",
        ),
    ],
)
def test_bad_settings_are_refused_by_name(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        cp.ChannelPruneConfig(**kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("teacher_weight", [0.0, 0.5])
def test_the_technique_on_digits_gives_a_smaller_dense_model(
    tmp_path, cnn, digits_dir, teacher_weight
):
    out = str(tmp_path / "channel_pruned")
    config = cp.ChannelPruneConfig(
        flops_fraction=0.5, round_to=4, epochs=3, teacher_weight=teacher_weight
    )
    result = cp.channel_prune_model(cnn, digits_dir, out, config)
    assert result.flops_removed >= 0.5 and result.params_after < result.params_before
    pruned = models.load_model(out)
    assert models.count_params(pruned) == result.params_after
    assert not any("prune" in type(layer).__name__.lower() for layer in pruned.layers)
    base_acc = accuracy(cnn, "saved_model", digits_dir)
    # measured: 98.03% -> 96.91% with 60% of the FLOPs out of this 9.8k-parameter CNN
    assert accuracy(out, "saved_model", digits_dir) > base_acc - 0.03
    # the metrics are the saved student's, not the distiller's (which has no accuracy)
    val = accuracy(out, "saved_model", digits_dir, split="validation")
    assert result.metrics["val_accuracy"] == pytest.approx(val, abs=1e-6)


@pytest.mark.slow
def test_a_latency_target_bisects_the_keep_ratio_on_measured_time(tmp_path, digits_dir):
    info = schema.load_info(digits_dir)
    # two 2048-unit layers: batch-1 time is their multiply-adds, which pruning takes out
    wide = models.build_model(
        models.ModelConfig(arch="mlp", width=2048, depth=2),
        info.feature_shape, info.num_classes, 0.0, 1.0,
    )  # fmt: skip
    path = str(tmp_path / "wide")
    models.save_for_dataset(wide, path, info)
    for target, reached in ((0.7, True), (0.02, False)):
        config = cp.ChannelPruneConfig(latency_target=target, epochs=0)
        result = cp.channel_prune_model(path, digits_dir, str(tmp_path / f"p{target}"), config)
        (note,) = [n for n in result.notes if n.startswith(f"latency target {target:g}x")]
        assert ("not reached" not in note) == reached, note
        assert result.latency_ratio is not None and result.flops_after < result.flops_before
        if reached:  # the most channels whose measured time is within the target
            assert 0 < result.keep_ratio < 1 and result.latency_ratio <= target
        else:  # the most channels among the fastest measured, and what they measured
            assert result.latency_ratio > target and "7 models timed" in note


def test_a_latency_target_cuts_the_flops_search():
    t = registry.get_technique("channel_prune")
    config = cp.ChannelPruneConfig(latency_target=0.6, search=True)
    assert search.cut(t, config) == "latency_target=0.6 decides the channels, not flops_fraction"
    assert search.cut(t, cp.ChannelPruneConfig(search=True)) == ""
    with pytest.raises(ConfigError, match=r"latency_target=1.0 is not allowed"):
        cp.ChannelPruneConfig(latency_target=1.0)
