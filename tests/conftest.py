"""Shared fixtures: the built-in dataset and a small trained model, built once per session."""

from __future__ import annotations

import os

import pytest

from tfopt.components._image import BASE_IMAGE

from helpers import machine

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SLOW_S = 120.0  # a test taking longer is named as it ends


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failure that mentions a timeout carries what the machine and this process's
    threads were doing (taken here, in the process that ran the test)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and any(w in report.longreprtext for w in machine.TIMEOUT_WORDS):
        report.sections.append(("machine", machine.snapshot() + "\n" + machine.thread_stacks()))


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
        for name, text in report.sections:
            if name == "machine":
                reporter.write_line("  " + text.replace("\n", "\n  "))


_config = None


def pytest_configure(config):
    global _config
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        _config = config


_start_lines: list[str] = []


def pytest_sessionstart(session):
    """Under CI, stop what an earlier run of this checkout left going, before the workers
    start (CI's runner is this checkout's alone; a pytest that a test starts inherits
    TFOPT_TEST_RUN and leaves the run it is part of alone)."""
    if hasattr(session.config, "workerinput") or not os.environ.get("CI"):
        return
    if os.environ.get("TFOPT_TEST_RUN"):
        return
    os.environ["TFOPT_TEST_RUN"] = str(os.getpid())
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    stopped = machine.stop_leftovers(root + "/", "/tfopt-podman-")
    stopped += machine.remove_leftover_containers(BASE_IMAGE.rsplit("/", 1)[0] + "/")
    if stopped:
        _start_lines.append(f"stopped, left by an earlier run: {'; '.join(stopped)}")


def pytest_report_header(config):
    """The machine as the run starts, in the header: a loaded runner, or one with an
    earlier run's processes still going, shows here."""
    if not hasattr(config, "workerinput"):
        return [*_start_lines, f"machine at start: {machine.snapshot(sample_s=1.0, top=8)}"]
    return []


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
