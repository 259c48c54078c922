"""Shared fixtures: the built-in dataset and a small trained model, built once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SLOW_S = 120.0  # a test taking longer is named as it ends


def pytest_runtest_logreport(report):
    """Name a failure, or a test past SLOW_S, when it happens rather than only in the
    summary at the end: a CI run cut off at its time limit still says what failed."""
    failed = report.failed and report.when in ("setup", "call", "teardown")
    slow = report.when == "call" and report.duration > SLOW_S
    reporter = _config and _config.pluginmanager.get_plugin("terminalreporter")
    if (failed or slow) and reporter:
        what = f"FAILED ({report.when})" if failed else "slow"
        lines = report.longreprtext.splitlines() if failed else []
        why = next((ln for ln in reversed(lines) if ln.startswith("E ")), "")[:300]
        reporter.write_line(f"\n{what}: {report.nodeid} ({report.duration:.0f} s) {why}")


_config = None


def pytest_configure(config):
    global _config
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        _config = config


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


@pytest.fixture
def forget_keras3_origin():
    """A test that loads a model from Keras 3 leaves no origin for a later test's save
    (``tfopt.training.keras3`` carries the last loaded model's origin to the next save)."""
    yield
    from tfopt.training import keras3

    keras3.forget()
