"""Hyperparameter search (tfopt.training.tune) and TensorBoard layout helpers
(tfopt.training.tensorboard).
"""

from __future__ import annotations

import json
import os

import pytest

from tfopt import fsutil
from tfopt._keras import keras
from tfopt.data import ingest, schema
from tfopt.errors import ConfigError, DataError
from tfopt.training import search_space, tensorboard, tune
from tfopt.training.train import TrainConfig

TINY_SPACE = {
    "arch": ["mlp"],
    "width": [8, 16],
    "learning_rate": {"min": 1e-3, "max": 1e-2, "sampling": "log"},
}
TINY_BASE = {"epochs": 1, "early_stopping_patience": 0}


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("tune") / "digits")
    ingest.ingest(path, ingest.IngestConfig(source="builtin:digits"))
    return path


def tiny(**changes) -> tune.TuneConfig:
    values = {
        "algorithm": "random",
        "max_trials": 2,
        "search_space": TINY_SPACE,
        "base": TINY_BASE,
        **changes,
    }
    return tune.TuneConfig(**values)


# --- search space and config validation (no training) -----------------------------


def test_default_space_parses_and_round_trips():
    space = search_space.SearchSpace.from_dict(search_space.DEFAULT_SEARCH_SPACE)
    assert space.names() == ("arch", "depth", "width", "learning_rate", "dropout", "batch_size")
    assert space.to_dict() == search_space.DEFAULT_SEARCH_SPACE
    hp = space.hyperparameters()
    assert hp.get("arch") in ("cnn", "mlp")
    lr = next(p for p in hp.space if p.name == "learning_rate")
    assert (lr.min_value, lr.max_value, lr.sampling) == (1e-4, 1e-2, "log")
    depth = next(p for p in hp.space if p.name == "depth")
    assert (depth.min_value, depth.max_value) == (1, 3)
    # the config keeps the parsed form and accepts the parsed space as is
    assert tune.TuneConfig(search_space=space).search_space == space
    assert tune.TuneConfig().search_space == space


def test_space_value_kinds():
    space = search_space.SearchSpace.from_dict({"dropout": [0, 0.25], "depth": 2, "width": [32]})
    kinds = {d.name: (d.kind, d.values) for d in space.dimensions}
    assert kinds == {
        "dropout": ("choice", (0.0, 0.25)),
        "depth": ("fixed", (2,)),
        "width": ("fixed", (32,)),
    }
    assert isinstance(kinds["dropout"][1][0], float)  # keras-tuner needs one type per choice


@pytest.mark.parametrize(
    ("space", "needle"),
    [
        ({}, "search space is empty"),
        ([], "expected a mapping"),
        ({"layers": [1, 2]}, "unknown hyperparameter 'layers'"),
        ({"width": []}, "non-empty list"),
        ({"width": [16, 16]}, "without repeated"),
        ({"width": [16.5, 32]}, "integers"),
        ({"width": [True, 32]}, "integers"),
        ({"depth": {"min": 3, "max": 1}}, "min <= max"),
        ({"depth": {"min": 0, "max": 3}}, "in [1, 16]"),
        ({"depth": {"min": 1}}, "a range"),
        ({"depth": {"min": 1, "max": 3, "stride": 1}}, "a range"),
        ({"depth": {"min": 1, "max": 3, "step": 0.5}}, "positive step"),
        ({"learning_rate": {"min": 0.0, "max": 0.1}}, "in (0.0, 10.0]"),
        ({"dropout": {"min": 0.0, "max": 0.5, "sampling": "log"}}, "min > 0"),
        ({"dropout": {"min": 0.1, "max": 0.5, "sampling": "exp"}}, "sampling"),
        ({"dropout": [0.1, 1.0]}, "in [0.0, 1.0)"),
        ({"arch": ["cnn", "rnn"]}, "'rnn'"),
        ({"arch": {"min": 0, "max": 1}}, "categorical"),
        ({"arch": ["mlp"], "width": 16}, "nothing to search"),
    ],
)
def test_bad_search_space_names_the_problem(space, needle):
    with pytest.raises(ConfigError) as err:
        tune.TuneConfig(search_space=space)
    assert needle in str(err.value)
    assert "search_space" in str(err.value)


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"max_trials": 0}, "max_trials=0"),
        ({"objective": "val_auc"}, "objective='val_auc'"),
        ({"objective": "accuracy "}, "objective"),
        ({"algorithm": "grid"}, "algorithm='grid'"),
        ({"hyperband_factor": 1}, "hyperband_factor=1"),
        ({"base": {"epochs": 0}}, "epochs=0"),
        ({"base": {"profile_batches": "2,3"}}, "profile_batches"),
        ({"base": {"epoch": 3}}, "unknown key(s) epoch"),
    ],
)
def test_bad_config_is_rejected(changes, needle):
    with pytest.raises(ConfigError, match="is not allowed|unknown key") as err:
        tiny(**changes)
    assert needle in str(err.value)


def test_train_config_from_hyperparameters():
    base = TrainConfig(epochs=7, optimizer="sgd", seed=3)
    best = {
        "arch": "mlp",
        "width": 64,
        "depth": 1,
        "dropout": 0.2,
        "learning_rate": 0.005,
        "batch_size": 128,
    }
    cfg = tune.train_config_from_hyperparameters(best, base)
    assert (cfg.model.arch, cfg.model.width, cfg.model.depth, cfg.model.dropout) == (
        "mlp",
        64,
        1,
        0.2,
    )
    assert (cfg.learning_rate, cfg.batch_size) == (0.005, 128)
    assert (cfg.epochs, cfg.optimizer, cfg.seed) == (7, "sgd", 3)  # untouched
    # a partial dict changes only what it names
    assert tune.train_config_from_hyperparameters({"width": 8}, base).model == base.model.__class__(
        width=8
    )
    with pytest.raises(ConfigError, match="unknown name.*units"):
        tune.train_config_from_hyperparameters({"units": 8}, base)
    with pytest.raises(ConfigError, match="'depth'"):
        tune.train_config_from_hyperparameters({"depth": 0}, base)
    with pytest.raises(ConfigError, match="JSON object"):
        tune.train_config_from_hyperparameters([1], base)


def test_observe_helpers(tmp_path):
    root = str(tmp_path / "tb")
    assert tensorboard.tensorboard_subdir(None, "train") is None
    path = tensorboard.tensorboard_subdir(root, "QAT fine-tune")
    assert path == os.path.join(root, "QAT_fine-tune") and os.path.isdir(path)
    for bad in ("", "  ", "///"):
        with pytest.raises(ConfigError, match="step_name"):
            tensorboard.safe_name(bad)
    assert tensorboard.event_dirs(str(tmp_path / "missing")) == []
    assert tensorboard.logdir_spec({"train": "/a", "prune step": "/b"}) == "train:/a,prune_step:/b"


# --- searches -------------------------------------------------------------------------


def _no_search_written(out):
    return not os.path.exists(os.path.join(out, tune.PROJECT_NAME))


def test_bad_input_fails_before_any_trial(digits, tmp_path):
    no_val = str(tmp_path / "noval")
    ingest.ingest(no_val, ingest.IngestConfig(source="builtin:digits", validation_fraction=0.0))
    out = str(tmp_path / "search")
    with pytest.raises(DataError, match="validation split"):
        tune.tune(no_val, out, tiny())
    assert _no_search_written(out)
    flat = str(tmp_path / "flat")
    ingest.ingest(
        flat,
        ingest.IngestConfig(
            source="builtin:synthetic", synthetic_examples=200, synthetic_shape=(64,)
        ),
    )
    assert schema.load_info(flat).feature_shape == (64,)  # flat: no (height, width, channels)
    with pytest.raises(ConfigError, match=r"includes 'cnn' but the dataset's features"):
        tune.tune(flat, out, tiny(search_space={"arch": ["cnn", "mlp"]}))
    assert _no_search_written(out)


@pytest.mark.slow
def test_random_search_resumes_and_extends(digits, tmp_path):
    out, tb = str(tmp_path / "search"), str(tmp_path / "tb")
    result = tune.tune(digits, out, tiny(), tensorboard_dir=tb)

    assert result.trials_run == 2 and len(result.trials) == 2
    assert [t["status"] for t in result.trials] == ["COMPLETED", "COMPLETED"]
    scores = [t["metrics"]["val_accuracy"] for t in result.trials]
    assert result.best_score == max(scores)
    assert all(0.0 <= s <= 1.0 for s in scores)
    best = result.best_hyperparameters
    assert best["arch"] == "mlp" and best["width"] in (8, 16)
    assert 1e-3 <= best["learning_rate"] <= 1e-2
    assert set(best) == {"arch", "width", "learning_rate"}
    # files written next to the search
    assert fsutil.read_json(os.path.join(out, tune.BEST_FILE)) == best
    assert len(fsutil.read_json(os.path.join(out, tune.TRIALS_FILE))) == 2
    with open(os.path.join(out, tune.REPORT_FILE)) as fh:
        report = fh.read()
    assert report == result.to_markdown()
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and "(best)" in "".join(rows) and "val_accuracy" in rows[0]
    metrics = result.metrics()
    assert metrics["best_val_accuracy"] == result.best_score
    assert (metrics["trials_completed"], metrics["trials_run"]) == (2, 2)
    # one TensorBoard run per trial, with real epoch scalars
    assert tensorboard.event_dirs(tb) == [
        "trial_0/train",
        "trial_0/validation",
        "trial_1/train",
        "trial_1/validation",
    ]
    scalars = tensorboard.read_scalars(os.path.join(tb, "trial_0", "validation"))
    assert scalars["epoch_accuracy"][0][0] == 0
    assert scalars["epoch_accuracy"][0][1] == pytest.approx(
        result.trials[0]["metrics"]["val_accuracy"], abs=1e-6
    )

    # the same directory again: budget met, nothing re-run, same answer
    again = tune.tune(digits, out, tiny())
    assert again.trials_run == 0
    assert again.best_hyperparameters == best and again.trials == result.trials

    # a larger budget extends the search instead of restarting it
    more = tune.tune(digits, out, tiny(max_trials=3))
    assert more.trials_run == 1 and len(more.trials) == 3
    assert more.trials[:2] == result.trials
    assert more.best_score >= result.best_score

    # another space in the same directory is refused
    with pytest.raises(ConfigError, match="search_space"):
        tune.tune(digits, out, tiny(search_space={"arch": ["mlp"], "width": [8, 32]}))


class _Interrupt(keras.callbacks.Callback):
    """Stops the process like Ctrl-C / preemption in the middle of the n-th trial."""

    def __init__(self, at_fit: int):
        super().__init__()
        self.at_fit, self.fits = at_fit, 0

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_train_batch_end(self, batch, logs=None):
        if self.fits == self.at_fit and batch == 2:
            raise KeyboardInterrupt


@pytest.mark.slow
def test_interrupted_search_continues(digits, tmp_path):
    out = str(tmp_path / "search")
    config = tiny(max_trials=3)
    with pytest.raises(KeyboardInterrupt):
        tune.tune(digits, out, config, callbacks=[_Interrupt(at_fit=2)])
    first = fsutil.read_json(os.path.join(out, tune.PROJECT_NAME, "trial_0", "tfopt_trial.json"))
    oracle = fsutil.read_json(os.path.join(out, tune.PROJECT_NAME, "oracle.json"))
    assert list(oracle["ongoing_trials"].values()) == ["1"]

    result = tune.tune(digits, out, config)
    # trial 0 is kept; the interrupted trial 1 is run again, then trial 2
    assert result.trials_run == 2
    assert [t["trial_id"] for t in result.trials] == ["0", "1", "2"]
    assert all(t["status"] == "COMPLETED" for t in result.trials)
    assert (
        fsutil.read_json(os.path.join(out, tune.PROJECT_NAME, "trial_0", "tfopt_trial.json"))
        == first
    )


@pytest.mark.slow
def test_hyperband_continues_trials_and_respects_budget(digits, tmp_path):
    config = tiny(
        algorithm="hyperband",
        max_trials=4,
        hyperband_factor=2,
        base={"epochs": 2, "early_stopping_patience": 0},
    )
    result = tune.tune(digits, str(tmp_path / "hb"), config)
    assert len(result.trials) == 4 and result.trials_run == 4
    assert all(t["status"] == "COMPLETED" for t in result.trials)
    # bracket 1: two 1-epoch trials, the better one continued to epoch 2; bracket 0 starts
    assert [t["epochs"] for t in result.trials] == [1, 1, 2, 2]
    better = max(result.trials[:2], key=lambda t: t["metrics"]["val_accuracy"])
    assert result.trials[2]["hyperparameters"] == better["hyperparameters"]


@pytest.mark.slow
def test_bayesian_search(digits, tmp_path):
    # one random start, then two trials proposed by the Gaussian process
    config = tiny(algorithm="bayesian", max_trials=3, objective="val_loss")
    result = tune.tune(digits, str(tmp_path / "bo"), config)
    assert result.direction == "min" and len(result.trials) == 3
    losses = [t["metrics"]["val_loss"] for t in result.trials]
    assert result.best_score == min(losses)
    assert len({json.dumps(t["hyperparameters"], sort_keys=True) for t in result.trials}) == 3
