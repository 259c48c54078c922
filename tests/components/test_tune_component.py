"""Tune component: best hyperparameters JSON, Metrics, Markdown trial table, TensorBoard."""

from __future__ import annotations

import json
import os

import pytest
from kfp import dsl

from tfopt.components import _util
from tfopt.components.tune import tune
from tfopt.data import ingest
from tfopt.errors import ConfigError
from tfopt.fsutil import read_json
from tfopt.training import tensorboard as tensorboard_lib

TRAIN_PARAMS = dict(arch="cnn", width=32, depth=3, dropout=0.1, epochs=7)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("tunecomp") / "digits"
    ingest.ingest(str(path), ingest.IngestConfig(source="builtin:digits"))
    return dsl.Dataset(uri=str(path))


def _outputs(tmp_path):
    return {
        "best_hyperparameters": dsl.Artifact(uri=str(tmp_path / "best.json")),
        "metrics": dsl.Metrics(uri=str(tmp_path / "metrics")),
        "report": dsl.Markdown(uri=str(tmp_path / "report.md")),
        "tensorboard": dsl.Artifact(uri=str(tmp_path / "tb")),
    }


def test_tune_component_outputs_feed_train(dataset, tmp_path):
    outs = _outputs(tmp_path)
    work = str(tmp_path / "work")
    tune.python_func(
        dataset=dataset,
        **outs,
        search_space={"arch": ["mlp"], "width": [8, 16]},
        max_trials=2,
        epochs=1,
        early_stopping_patience=0,
        work_dir=work,
    )

    with open(outs["best_hyperparameters"].path) as fh:
        best = json.load(fh)
    assert best["arch"] == "mlp" and best["width"] in (8, 16) and set(best) == {"arch", "width"}
    meta = outs["best_hyperparameters"].metadata
    assert meta["objective"] == "val_accuracy" and meta["width"] == best["width"]
    logged = outs["metrics"].metadata
    assert logged["best_val_accuracy"] == pytest.approx(meta["score"])
    assert 0.0 < logged["best_val_accuracy"] <= 1.0
    assert (logged["trials_completed"], logged["trials_run"]) == (2.0, 2.0)
    with open(outs["report"].path) as fh:
        report = fh.read()
    assert report.count("| COMPLETED |") == 2 and "(best)" in report
    assert tensorboard_lib.event_dirs(outs["tensorboard"].path) == [
        "trial_0/train",
        "trial_0/validation",
        "trial_1/train",
        "trial_1/validation",
    ]
    # every training component (in-cluster, TFJob and Vertex launchers) takes it as is
    config = _util.train_config(outs["best_hyperparameters"], **TRAIN_PARAMS)
    assert (config.model.arch, config.model.width) == ("mlp", best["width"])
    assert config.model.depth == 3 and config.epochs == 7  # the rest as the step set it

    # re-run on the same work_dir (a retried step): no new trial, same answer
    outs2 = _outputs(tmp_path / "again")
    tune.python_func(
        dataset=dataset,
        **outs2,
        search_space={"arch": ["mlp"], "width": [8, 16]},
        max_trials=2,
        epochs=1,
        early_stopping_patience=0,
        work_dir=work,
    )
    assert outs2["metrics"].metadata["trials_run"] == 0.0
    with open(outs2["best_hyperparameters"].path) as fh:
        assert json.load(fh) == best


def test_a_disabled_tune_step_changes_no_training_setting(tmp_path):
    outs = _outputs(tmp_path)
    tune.python_func(dataset=dsl.Dataset(uri=str(tmp_path / "unused")), **outs, enabled=False)
    assert read_json(outs["best_hyperparameters"].path)["skipped"] is True
    untuned = _util.train_config(None, **TRAIN_PARAMS)
    assert _util.train_config(outs["best_hyperparameters"], **TRAIN_PARAMS) == untuned
    assert (untuned.model.arch, untuned.model.width, untuned.epochs) == ("cnn", 32, 7)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"search_space": {}}, "search space is empty"),
        ({"max_trials": 0}, "max_trials=0"),
        ({"objective": "val_precision"}, "objective='val_precision'"),
    ],
)
def test_tune_component_rejects_bad_input_before_any_trial(dataset, tmp_path, params, needle):
    outs = _outputs(tmp_path)
    with pytest.raises(ConfigError, match="is not allowed") as err:
        tune.python_func(dataset=dataset, **outs, **params)
    assert needle in str(err.value)
    for name in ("best_hyperparameters", "report", "tensorboard"):
        assert not os.path.exists(outs[name].path)
