"""Shared helpers for the compression tests (plain functions; models cached per session)."""

from __future__ import annotations

import os

import numpy as np

from tfopt import fsutil
from tfopt._keras import keras, tf
from tfopt.data import input_pipeline, schema
from tfopt.training import models, train

WRAPPER_MARKERS = (
    "PruneLowMagnitude",
    "Quantize",
    "prune_low_magnitude",
    "quant_",
    "pruning_step",
    "mask:",
    "threshold:",
)


def trained_cnn(tmp_path_factory, digits_dir: str) -> str:
    """A tiny CNN (conv1 8, conv2 16, dense1 32, logits; ~5k params), trained once per session."""
    path = str(tmp_path_factory.getbasetemp() / "compression_cnn")
    if not os.path.exists(path):
        config = train.TrainConfig(
            model=models.ModelConfig(arch="cnn", width=8, depth=2, dropout=0.0),
            epochs=12,
            early_stopping_patience=0,
            batch_size=32,
            learning_rate=3e-3,
        )
        train.train_model(digits_dir, path, config)
    return path


def pruned_cnn(tmp_path_factory, digits_dir: str) -> str:
    """The tiny CNN pruned to 0.75 (polynomial), trained once per session."""
    from tfopt.compression import prune

    path = str(tmp_path_factory.getbasetemp() / "compression_pruned")
    if not os.path.exists(path):
        prune.prune_model(
            trained_cnn(tmp_path_factory, digits_dir),
            digits_dir,
            path,
            prune.PruneConfig(target_sparsity=0.75, epochs=4, batch_size=32, learning_rate=1e-3),
        )
    return path


def snapshot(path: str) -> tuple[str, list[np.ndarray]]:
    """Digest of every file of a SavedModel plus its loaded weights."""
    digest = fsutil.sha256_files(fsutil.iter_files(path))
    return digest, models.load_model(path).get_weights()


def assert_unchanged(path: str, before: tuple[str, list[np.ndarray]]) -> None:
    digest, weights = snapshot(path)
    assert digest == before[0]
    assert len(weights) == len(before[1])
    for a, b in zip(weights, before[1], strict=True):
        np.testing.assert_array_equal(a, b)


def layer_classes(model: keras.Model) -> list[str]:
    """Class names of every layer, nested models included."""
    out = []
    for layer in model.layers:
        out.append(type(layer).__name__)
        if isinstance(layer, keras.Model):
            out += layer_classes(layer)
    return out


def assert_no_wrappers(path: str) -> None:
    """No pruning / quantization wrapper layer or variable in a SavedModel."""
    classes = layer_classes(models.load_model(path))
    assert not [c for c in classes if "Prune" in c or "Quantize" in c], classes
    names = [v.name for v in tf.saved_model.load(path).variables]
    bad = [n for n in names if any(m in n for m in WRAPPER_MARKERS)]
    assert not bad, bad


def accuracy(path: str, fmt: str, digits_dir: str, split: str = "test") -> float:
    from tfopt.evaluation.runtime import Predictor

    x, y = input_pipeline.load_arrays(schema.load_info(digits_dir), split)
    return float(np.mean(Predictor(path, fmt).predict(x).argmax(1) == y))
