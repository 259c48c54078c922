"""Models that output NaN or do not fit the dataset: a clear error before anything is
written, and through the evaluate and select steps a recorded failure, never a blessing."""

from __future__ import annotations

import os

import pytest
from kfp import dsl

from tfopt._keras import keras
from tfopt.components.evaluate import evaluate as evaluate_component
from tfopt.components.select import select as select_component
from tfopt.compression import prune
from tfopt.errors import ModelError, TrainingError
from tfopt.evaluation import evaluate
from tfopt.fsutil import read_json
from tfopt.training import models, train


def _nan_model(feature_shape=(8, 8, 1)) -> keras.Model:
    """A classifier whose every output is NaN (a NaN kernel, as after a divergence)."""
    inputs = keras.Input(feature_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(
        16,
        activation=None,  # relu(NaN) is 0 on some CPUs
        kernel_initializer=keras.initializers.Constant(float("nan")),
    )(x)
    out = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, out)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, digits_dir):
    root = tmp_path_factory.mktemp("bad_models")
    good = train.train_model(
        digits_dir,
        str(root / "good"),
        train.TrainConfig(
            model=models.ModelConfig(arch="mlp", width=32, depth=1),
            epochs=2,
            early_stopping_patience=0,
        ),
    ).model_path
    nan = models.save_model(_nan_model(), str(root / "nan"))
    narrow = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (4,), 3)
    mismatched = models.save_model(narrow, str(root / "mismatched"))
    return {"good": good, "nan": nan, "mismatched": mismatched}


def test_training_that_diverges_fails_before_writing_a_model(digits_dir, tmp_path):
    out = str(tmp_path / "model")
    with pytest.raises(
        TrainingError,
        match=r"train: training diverged in epoch 1: "
        r"loss = nan.*learning_rate 0\.001",
    ):
        train.train_model(
            digits_dir,
            out,
            train.TrainConfig(epochs=3, early_stopping_patience=0),
            model=_nan_model(),
        )
    assert not os.path.exists(out)
    # the diverged epoch was not backed up: a re-run cannot resume into NaN weights
    assert train.TrainConfig().epochs and not any(
        "ckpt" in name for _, _, files in os.walk(out + ".backup") for name in files
    )


def test_fine_tuning_that_diverges_fails_before_writing(digits_dir, saved, tmp_path):
    out = str(tmp_path / "pruned")
    with pytest.raises(TrainingError, match="fine-tuning: training diverged in epoch 1"):
        prune.prune_model(
            saved["nan"],
            digits_dir,
            out,
            prune.PruneConfig(target_sparsity=0.5, epochs=2, batch_size=64),
        )
    assert not os.path.exists(out)


def test_evaluate_refuses_nan_outputs_and_mismatched_inputs(digits_dir, saved):
    config = evaluate.EvalConfig(latency_iterations=5)
    with pytest.raises(ModelError, match=f"{saved['nan']}: the model outputs NaN"):
        evaluate.evaluate_model(saved["nan"], "saved_model", digits_dir, config)
    with pytest.raises(ModelError) as err:
        evaluate.evaluate_model(saved["mismatched"], "saved_model", digits_dir, config)
    assert saved["mismatched"] in str(err.value) and "(8, 8, 1)" in str(err.value)


def _model(path, variant):
    return dsl.Model(uri=path, metadata={"variant": variant, "format": "saved_model"})


def _evaluate_then_select(tmp_path, digits_dir, baseline, **candidates):
    evaluations = dsl.Artifact(uri=str(tmp_path / "evaluations.json"))
    evaluate_component.python_func(
        dataset=dsl.Dataset(uri=digits_dir),
        baseline=baseline,
        evaluations=evaluations,
        metrics=dsl.Metrics(uri=str(tmp_path / "eval_metrics")),
        latency_iterations=5,
        latency_warmup=1,
        throughput_iterations=2,
        **candidates,
    )
    outs = {
        name: cls(uri=str(tmp_path / name))
        for name, cls in (
            ("summary", dsl.Artifact),
            ("report_markdown", dsl.Markdown),
            ("report_html", dsl.HTML),
            ("model_card", dsl.Markdown),
            ("metrics", dsl.Metrics),
            ("confusion_matrix", dsl.ClassificationMetrics),
            ("selected_model", dsl.Model),
        )
    }
    blessed = select_component.python_func(
        evaluations=evaluations, baseline_model=baseline, **outs, **candidates
    )
    return blessed, read_json(str(tmp_path / "summary"))


def test_nan_and_mismatched_candidates_are_rejected_with_the_reason(digits_dir, saved, tmp_path):
    blessed, summary = _evaluate_then_select(
        tmp_path,
        digits_dir,
        _model(saved["good"], "baseline"),
        pruned=_model(saved["nan"], "pruned"),
        lowrank=_model(saved["mismatched"], "lowrank"),
    )
    assert blessed is True and summary["selected"] == "baseline"
    variants = {v["name"]: v for v in summary["variants"]}
    assert "outputs NaN" in " ".join(variants["pruned"]["rejected_reasons"])
    assert "(8, 8, 1)" in " ".join(variants["lowrank"]["rejected_reasons"])


def test_a_nan_baseline_blesses_nothing(digits_dir, saved, tmp_path):
    blessed, summary = _evaluate_then_select(
        tmp_path,
        digits_dir,
        _model(saved["nan"], "baseline"),
        pruned=_model(saved["good"], "pruned"),
    )
    assert blessed is False and summary["blessed"] is False
    assert not os.path.exists(tmp_path / "selected_model")
    variants = {v["name"]: v for v in summary["variants"]}
    assert "cannot be checked" in " ".join(variants["pruned"]["rejected_reasons"])
