"""Shared fixtures: the built-in dataset and a small trained model, built once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> str:
    """builtin:digits ingested with the default split (train 1261 / val 180 / test 356)."""
    from tfopt.data import ingest

    path = str(tmp_path_factory.mktemp("data") / "digits")
    ingest.ingest(path, ingest.IngestConfig())
    return path


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory, digits_dir) -> str:
    """A small MLP trained a few epochs on digits (about 95% test accuracy), as a SavedModel."""
    from tfopt.training import models, train

    path = str(tmp_path_factory.mktemp("models") / "mlp")
    config = train.TrainConfig(
        model=models.ModelConfig(arch="mlp", width=32, depth=1),
        epochs=8,
        early_stopping_patience=0,
        batch_size=32,
    )
    train.train_model(digits_dir, path, config)
    return path


@pytest.fixture(scope="session")
def cnn(tmp_path_factory, digits_dir) -> str:
    """The tiny CNN the compression tests start from (trained once; helpers.compression)."""
    from helpers.compression import trained_cnn

    return trained_cnn(tmp_path_factory, digits_dir)
