"""Low-rank factorization: SVD init, per-layer reduction, fine-tuning, input untouched,
bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt._keras import keras
from tfopt.compression import lowrank
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError, ModelError
from tfopt.training import models

from helpers.compression import (
    accuracy,
    assert_no_wrappers,
    assert_unchanged,
    layer_classes,
    snapshot,
)


@pytest.fixture(scope="module")
def factorized(tmp_path_factory, digits_dir, cnn):
    before = snapshot(cnn)
    out = str(tmp_path_factory.mktemp("lowrank") / "lr")
    result = lowrank.factorize_model(
        cnn, digits_dir, out, lowrank.LowRankConfig(rank=8, epochs=2, batch_size=32)
    )
    return result, before


def test_rank_reduces_parameters_per_layer(factorized):
    result, _ = factorized
    assert set(result.layers) == {"dense1"}  # logits (32x10): 8 * 42 >= 320 saves nothing
    layer = result.layers["dense1"]
    assert layer["rank"] == 8 and layer["max_rank"] == 32
    assert layer["params_before"] == 256 * 32
    assert layer["params_after"] == 8 * (256 + 32)
    assert result.factorized_reduction == pytest.approx(8192 / 2304)
    assert result.params_before - result.params_after == 8192 - 2304


def test_factorized_model_is_saved_plainly_and_keeps_accuracy(factorized, digits_dir, cnn):
    result, _ = factorized
    model = models.load_model(result.model_path)
    assert model.get_layer("dense1").get_layer("dense1_a").kernel.shape == (256, 8)
    assert "Sequential" in layer_classes(model)
    assert_no_wrappers(result.model_path)
    assert (
        accuracy(result.model_path, "saved_model", digits_dir)
        >= accuracy(cnn, "saved_model", digits_dir) - 0.05
    )


def test_input_model_is_unchanged_by_factorization(factorized, cnn):
    _, before = factorized
    assert_unchanged(cnn, before)


def test_factors_are_the_truncated_svd_of_the_trained_kernel(cnn, digits_dir):
    model = models.load_model(cnn)
    plan = lowrank.plan(model, lowrank.LowRankConfig(rank=20, layers=("dense1",)))
    w = model.get_layer("dense1").kernel.numpy()
    approx = plan["dense1"]["a"] @ plan["dense1"]["b"]
    s = np.linalg.svd(w, compute_uv=False)
    # Eckart-Young: the rank-r error is the norm of the dropped singular values
    assert np.linalg.norm(w - approx) == pytest.approx(np.linalg.norm(s[20:]), rel=1e-3)
    assert plan["dense1"]["energy"] == pytest.approx(np.sum(s[:20] ** 2) / np.sum(s**2))
    # before fine-tuning the factorized model is the original with W replaced by A @ B
    x, _ = input_pipeline.load_arrays(schema.load_info(digits_dir), "test", limit=64)
    new = lowrank.factorize(model, plan)
    reference = models.clone_model(model)
    layer = reference.get_layer("dense1")
    layer.set_weights([approx, layer.get_weights()[1]])
    np.testing.assert_allclose(
        new.predict(x, verbose=0), reference.predict(x, verbose=0), atol=1e-5
    )


def test_energy_picks_the_smallest_rank():
    s = np.array([3.0, 2.0, 1.0, 0.5])
    # squares 9, 4, 1, .25 of 14.25: 9/14.25 = .63, 13/14.25 = .91
    assert lowrank.energy_rank(s, 0.6) == 1
    assert lowrank.energy_rank(s, 0.9) == 2
    assert lowrank.energy_rank(s, 1.0) == 4


def test_rank_larger_than_the_layer_allows_fails_before_training(tmp_path, digits_dir, cnn):
    with pytest.raises(ConfigError, match="larger than"):
        lowrank.factorize_model(
            cnn, digits_dir, str(tmp_path / "o"), lowrank.LowRankConfig(rank=33, layers=("dense1",))
        )
    with pytest.raises(ConfigError, match="larger than"):
        lowrank.factorize_model(
            cnn, digits_dir, str(tmp_path / "o"), lowrank.LowRankConfig(rank=1000)
        )
    assert not (tmp_path / "o").exists()


def test_rank_that_saves_nothing_on_a_named_layer_is_refused(cnn):
    with pytest.raises(ConfigError, match="saves no parameters"):
        lowrank.plan(models.load_model(cnn), lowrank.LowRankConfig(rank=31, layers=("dense1",)))


def test_model_without_factorizable_layer_fails(tmp_path, digits_dir):
    inputs = keras.Input((8, 8, 1), name="x")
    h = keras.layers.Conv2D(4, 3, name="c")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Activation("softmax", name="probabilities")(
        keras.layers.Conv2D(10, 1, name="conv2d")(keras.layers.Reshape((1, 1, 4))(h))
    )
    model = keras.Model(inputs, keras.layers.Flatten()(out))
    assert set(lowrank.plan(model, lowrank.LowRankConfig(rank=2))) == {"conv2d"}  # 1x1 conv
    with pytest.raises(ModelError, match="no layer to factorize"):  # 3 * (4 + 10) >= 40
        lowrank.plan(model, lowrank.LowRankConfig(rank=3))
    conv_only = keras.Model(inputs, keras.layers.Flatten()(h))
    with pytest.raises(ModelError, match="no layer to factorize"):
        lowrank.plan(conv_only, lowrank.LowRankConfig(rank=2))
    with pytest.raises(ModelError, match="cannot be factorized"):
        lowrank.plan(conv_only, lowrank.LowRankConfig(rank=2, layers=("c",)))


@pytest.mark.parametrize("kwargs", [{"rank": -1}, {"energy": 0.0}, {"energy": 1.5}])
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ConfigError):
        lowrank.LowRankConfig(**kwargs)
