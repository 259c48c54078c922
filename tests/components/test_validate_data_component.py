"""validate-data -> evaluate -> select with a champion (issue 34), as the pipeline wires them:
the champion from the repository, its data compared, evaluated beside the candidates, the
gate against it; and each broken champion's defined outcome."""

import json
import os
import shutil

import numpy as np
import pytest
from kfp import dsl
from sklearn.datasets import load_digits

from tfopt import model_info
from tfopt.client.console import step_figure
from tfopt.components.evaluate import evaluate
from tfopt.components.select import select
from tfopt.components.validate_data import validate_data
from tfopt.data import drift, ingest
from tfopt.deploy.serving import config as serving_config
from tfopt.deploy.serving import deploy, repository

NAME = "digits"


def _validate(tmp_path, dataset_dir, tag, **kwargs):
    validation = dsl.Artifact(uri=str(tmp_path / tag / "validation"))
    report = dsl.Markdown(uri=str(tmp_path / tag / "report.md"))
    os.makedirs(tmp_path / tag, exist_ok=True)
    try:
        validate_data.python_func(
            dataset=dsl.Dataset(uri=dataset_dir),
            validation=validation,
            report=report,
            model_name=NAME,
            **kwargs,
        )
    finally:
        text = read(report.path) if os.path.exists(report.path) else ""
    with open(validation.path) as fh:
        return json.load(fh), text, validation


def read(path) -> str:
    with open(path) as fh:
        return fh.read()


@pytest.fixture
def repo(tmp_path, small_model_dir):
    base = str(tmp_path / "serving")
    repository.push_model(small_model_dir, base, NAME)
    entry = serving_config.ModelEntry(
        NAME, repository.model_dir(base, NAME), "specific", versions=(1,), labels=(("stable", 1),)
    )
    serving_config.upsert_entry(deploy.config_path(base), entry)
    return base


def test_a_first_run_says_there_is_no_champion(tmp_path, digits_dir):
    out, report, art = _validate(tmp_path, digits_dir, "first", serving_base_path=str(tmp_path))
    assert out["champion"]["uri"] == "" and "a first run" in out["champion"]["reason"]
    assert out["validation"]["status"] == "not_checked"
    assert "Champion: none" in report and "the value thresholds alone apply" in report
    assert art.metadata["status"] == "not_checked"


def test_the_champion_is_validated_evaluated_and_gates_the_candidates(
    tmp_path, digits_dir, small_model_dir, repo
):
    dv, report, validation = _validate(tmp_path, digits_dir, "v", serving_base_path=repo)
    assert dv["champion"]["version"] == "1" and dv["champion"]["source"] == "tf_serving"
    assert dv["validation"]["status"] == "passed"  # the same data it was trained on
    assert dv["validation"]["classes"]["linf"] == 0 and dv["validation"]["features"][0]["js"] == 0
    assert "| x[..., 0] | 0.0000 | 0.1 |" in report
    figure = step_figure(
        {"artifacts": {"validation": {"artifacts": [{"metadata": validation.metadata}]}}}
    )
    assert figure == "data passed, champion TF Serving version 1 (stable)"  # the console's
    evaluations = dsl.Artifact(uri=str(tmp_path / "evaluations"))
    evaluate.python_func(
        dataset=dsl.Dataset(uri=digits_dir),
        baseline=dsl.Model(
            uri=small_model_dir, metadata={"variant": "baseline", "format": "saved_model"}
        ),
        evaluations=evaluations,
        metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        validation=validation,
        latency_iterations=5,
        latency_min_seconds=0.0,
    )
    with open(evaluations.path) as fh:
        ev = json.load(fh)
    assert [c["name"] for c in ev["candidates"]] == ["baseline"]  # the champion is no candidate
    champion = ev["champion"]
    assert champion["evaluated"] and champion["uri"] == os.path.join(repo, NAME, "1")
    # the same model: the same figures on the same test split
    assert champion["accuracy"] == ev["candidates"][0]["accuracy"]
    assert ev["data_validation"]["validation"]["status"] == "passed"
    summary = dsl.Artifact(uri=str(tmp_path / "summary"))
    outputs = {
        k: cls(uri=str(tmp_path / k))
        for k, cls in (
            ("report_markdown", dsl.Markdown),
            ("report_html", dsl.HTML),
            ("model_card", dsl.Markdown),
            ("metrics", dsl.Metrics),
            ("confusion_matrix", dsl.ClassificationMetrics),
            ("selected_model", dsl.Model),
        )
    }
    ok = select.python_func(evaluations=evaluations, summary=summary, **outputs)
    assert ok  # the same accuracy: a change of +0 meets the default threshold 0
    strict = select.python_func(
        evaluations=evaluations,
        summary=summary,
        min_accuracy_change=0.5,
        **{k: type(v)(uri=v.uri + "2") for k, v in outputs.items()},
    )
    assert not strict
    with open(summary.path) as fh:
        s = json.load(fh)
    assert (
        s["champion"]["accuracy"] == champion["accuracy"]
        and "stays deployed" in (s["selection_reason"])
    )
    assert "## Data validation" in read(outputs["report_markdown"].path + "2")


def test_shifted_data_stops_before_training_with_the_feature_and_distance(
    tmp_path, small_model_dir, repo
):
    bunch = load_digits()
    src = tmp_path / "shifted.npz"
    np.savez(src, x=bunch.images[..., None] * 16.0, y=bunch.target)
    shifted = str(tmp_path / "shifted")
    ingest.ingest(shifted, ingest.IngestConfig(source=str(src)))
    with pytest.raises(drift.DataValidationError, match=r"x\[\.\.\., 0\]: .*Jensen-Shannon"):
        _validate(tmp_path, shifted, "s", serving_base_path=repo)
    report = read(tmp_path / "s" / "report.md")  # written before the step stopped
    assert "Status: **stopped**" in report and "**yes**" in report
    dv, _, _ = _validate(tmp_path, shifted, "a", serving_base_path=repo, accept_drift=True)
    assert dv["validation"]["status"] == "drift_accepted"
    assert dv["champion"]["uri"]  # same classes and inputs: still evaluated


def test_broken_champions_have_defined_outcomes(tmp_path, digits_dir, small_model_dir, repo):
    # no statistics (an older model): drift not measured, the champion still compared
    older = tmp_path / "older"
    shutil.copytree(small_model_dir, older)
    os.remove(older / model_info.DATA_FILE)
    dv, _, _ = _validate(tmp_path, digits_dir, "o", champion_uri=str(older))
    assert dv["validation"]["status"] == "not_checked" and dv["champion"]["uri"] == str(older)
    assert "has no tfopt_data.json" in dv["champion"]["data_note"]
    # other classes: stop; accepted, compared without the champion
    three = tmp_path / "three.npz"
    bunch = load_digits()
    keep = bunch.target < 3
    np.savez(three, x=bunch.images[keep][..., None], y=bunch.target[keep])
    ds3 = str(tmp_path / "ds3")
    ingest.ingest(ds3, ingest.IngestConfig(source=str(three)))
    with pytest.raises(drift.DataValidationError, match="3 classes but the champion has 10"):
        _validate(tmp_path, ds3, "c", serving_base_path=repo)
    dv, _, _ = _validate(tmp_path, ds3, "ca", serving_base_path=repo, accept_drift=True)
    assert dv["champion"]["uri"] == "" and "does not fit this data" in dv["champion"]["reason"]
    # a deleted stable version: compared without it, with the reason
    shutil.rmtree(os.path.join(repo, NAME, "1"))
    dv, _, _ = _validate(tmp_path, digits_dir, "d", serving_base_path=repo)
    assert dv["champion"]["uri"] == "" and "cannot be loaded" in dv["champion"]["reason"]
    assert dv["validation"]["status"] == "not_checked"
