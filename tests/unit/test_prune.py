"""Pruning on a tiny CNN: sparsity reached, layers kept dense, 2:4, input untouched, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt.compression import common, prune
from tfopt.errors import ConfigError, ModelError
from tfopt.training import models

from helpers.compression import (
    accuracy,
    assert_no_wrappers,
    assert_unchanged,
    pruned_cnn,
    snapshot,
)


@pytest.fixture(scope="module")
def polynomial(tmp_path_factory, digits_dir, cnn):
    before = snapshot(cnn)
    out = str(tmp_path_factory.mktemp("prune") / "pruned")
    result = prune.prune_model(
        cnn,
        digits_dir,
        out,
        prune.PruneConfig(target_sparsity=0.8, epochs=4, batch_size=32, learning_rate=1e-3),
    )
    return result, before


def test_polynomial_schedule_reaches_the_target_sparsity(polynomial):
    result, _ = polynomial
    assert result.sparsity == pytest.approx(0.8, abs=0.01)
    assert set(result.pruned_layers) == {"conv2", "dense1"}
    for name in result.pruned_layers:
        assert result.layer_sparsity[name] == pytest.approx(0.8, abs=0.01)
    # the saved model has the zeros, not only the report
    model = models.load_model(result.model_path)
    kernel = model.get_layer("dense1").kernel.numpy()
    assert np.mean(kernel == 0) == pytest.approx(0.8, abs=0.01)
    assert 0.5 < result.model_sparsity < result.sparsity
    assert result.schedule["end_step"] < result.schedule["total_steps"]
    assert result.schedule["end_step"] % result.schedule["frequency"] == 0


def test_first_conv_and_output_layer_stay_dense_by_default(polynomial):
    result, _ = polynomial
    assert result.dense_layers == ["conv1", "logits"]
    assert result.layer_sparsity["conv1"] < 0.05
    assert result.layer_sparsity["logits"] < 0.05


def test_pruned_model_keeps_accuracy_and_has_no_wrappers(polynomial, digits_dir, cnn):
    result, _ = polynomial
    assert_no_wrappers(result.model_path)
    assert (
        accuracy(result.model_path, "saved_model", digits_dir)
        >= accuracy(cnn, "saved_model", digits_dir) - 0.05
    )


def test_input_model_is_unchanged_by_pruning(polynomial, cnn):
    _, before = polynomial
    assert_unchanged(cnn, before)


def test_structured_2_4_zeroes_two_of_every_four_weights(tmp_path, digits_dir, cnn):
    result = prune.prune_model(
        cnn,
        digits_dir,
        str(tmp_path / "p24"),
        prune.PruneConfig(
            structured_2_4=True,
            schedule="constant",
            keep_dense=("conv1", "logits"),
            epochs=1,
            batch_size=32,
        ),
    )
    assert result.target_sparsity == 0.5
    assert any("2:4" in n for n in result.notes)
    kernel = models.load_model(result.model_path).get_layer("dense1").kernel.numpy()
    blocks = kernel.T.reshape(kernel.shape[1], -1, 4)  # blocks of 4 along the input axis
    assert np.all(np.sum(blocks == 0, axis=-1) >= 2)
    assert result.sparsity == pytest.approx(0.5, abs=0.01)


def test_shared_pruned_model_reaches_its_target(tmp_path_factory, digits_dir):
    path = pruned_cnn(tmp_path_factory, digits_dir)
    sparsity = common.kernel_sparsity(models.load_model(path))
    assert sparsity["dense1"] == pytest.approx(0.75, abs=0.01)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_sparsity_outside_0_1_is_refused(value):
    with pytest.raises(ConfigError, match="target_sparsity"):
        prune.PruneConfig(target_sparsity=value)


def test_bad_schedule_is_refused():
    with pytest.raises(ConfigError, match="schedule"):
        prune.PruneConfig(schedule="cubic")


def test_model_with_no_layer_to_prune_fails_before_training(tmp_path, digits_dir, cnn):
    config = prune.PruneConfig(keep_dense="conv1,conv2,dense1,logits")
    with pytest.raises(ModelError, match="no layer to prune"):
        prune.prune_model(cnn, digits_dir, str(tmp_path / "out"), config)
    assert not (tmp_path / "out").exists()


def test_unknown_layer_to_keep_dense_fails_before_training(tmp_path, digits_dir, cnn):
    with pytest.raises(ConfigError, match="nope"):
        prune.prune_model(
            cnn, digits_dir, str(tmp_path / "out"), prune.PruneConfig(keep_dense=("nope",))
        )
