"""The champion (issue 34): resolved from the TF Serving repository tfopt writes (or named),
its data record, and the selection against it (absolute and relative change thresholds),
with a defined outcome for each broken champion."""

import os
import shutil

import pytest

from tfopt import model_info
from tfopt.deploy import champion as resolve
from tfopt.deploy.serving import config as serving_config
from tfopt.deploy.serving import deploy, repository
from tfopt.evaluation import champion as champ
from tfopt.evaluation import select as sel
from tfopt.reporting import report
from tfopt.reporting.summary import format_table

NAME = "digits"


@pytest.fixture
def repo(tmp_path, small_model_dir):
    """A repository holding versions 1 and 2 of ``small_model_dir``, stable on 1."""
    base = str(tmp_path / "serving")
    repository.push_model(small_model_dir, base, NAME)
    v2 = tmp_path / "v2"
    shutil.copytree(small_model_dir, v2)
    (v2 / "assets.extra").mkdir(exist_ok=True)
    (v2 / "assets.extra" / "note.txt").write_text("another version")
    repository.push_model(str(v2), base, NAME)
    serving_config.upsert_entry(
        deploy.config_path(base),
        serving_config.ModelEntry(
            NAME,
            repository.model_dir(base, NAME),
            policy="specific",
            versions=(1, 2),
            labels=(("stable", 1), ("canary", 2)),
        ),
    )
    return base


def test_the_stable_version_of_the_repository_is_the_champion(repo):
    found = resolve.resolve_champion("tf_serving", repo, NAME)
    assert (found.source, found.version, found.reason) == ("tf_serving", "1", "")
    assert found.uri == os.path.join(repo, NAME, "1")
    # without models.config: the latest version, as TF Serving serves without a config
    os.remove(deploy.config_path(repo))
    assert resolve.resolve_champion("tf_serving", repo, NAME).version == "2"


def test_no_champion_is_said_and_why(tmp_path, small_model_dir):
    first = resolve.resolve_champion("tf_serving", str(tmp_path / "empty"), NAME)
    assert first.uri == "" and "holds no version yet (a first run)" in first.reason
    assert "serving_base_path is empty" in resolve.resolve_champion("tf_serving").reason
    assert "no champion to look up" in resolve.resolve_champion("kserve").reason
    assert "compared without" in resolve.resolve_champion("tf_serving", champion_uri="none").reason
    named = resolve.resolve_champion("none", champion_uri=small_model_dir + "/")
    assert (named.uri, named.source) == (small_model_dir, "champion_uri")


def test_a_deleted_or_corrupt_stable_version_is_left_out_with_the_reason(repo):
    v1 = os.path.join(repo, NAME, "1")
    with open(os.path.join(v1, "saved_model.pb"), "r+b") as fh:
        fh.seek(40)
        fh.write(b"\xff" * 64)
    corrupt = resolve.resolve_champion("tf_serving", repo, NAME)
    assert corrupt.uri == "" and corrupt.version == "1"
    assert "TF Serving version 1 (stable) cannot be loaded" in corrupt.reason
    assert corrupt.reason.endswith("compared without a champion")
    shutil.rmtree(v1)
    deleted = resolve.resolve_champion("tf_serving", repo, NAME)
    assert deleted.uri == "" and "holds no saved_model.pb (deleted?)" in deleted.reason


def test_the_champion_data_record_or_what_an_older_model_says(tmp_path, small_model_dir):
    data, note = resolve.champion_data(small_model_dir)
    assert data["statistics"] is not None and note == ""
    older = tmp_path / "older"
    shutil.copytree(small_model_dir, older)
    os.remove(older / model_info.DATA_FILE)
    data, note = resolve.champion_data(str(older))
    assert data["statistics"] is None and "has no tfopt_data.json" in note
    assert data["dataset"] == {"feature_shape": [8, 8, 1], "num_classes": 10}
    (older / model_info.DATA_FILE).write_text("{not json")
    data, note = resolve.champion_data(str(older))
    assert data["statistics"] is None and "unreadable" in note


def rec(name, accuracy, fmt="saved_model"):
    return {
        "name": name,
        "format": fmt,
        "path": f"/m/{name}",
        "accuracy": accuracy,
        "precision": accuracy,
        "recall": accuracy,
        "f1": accuracy,
        "size_bytes": 1000,
        "gzip_bytes": 500,
        "latency_ms_p50": 0.1,
        "latency_ms_p95": 0.15,
        "latency_ms_p99": 0.2,
        "throughput_per_s": 1e4,
    }


def _champion(accuracy, **extra):
    return champ.champion_entry(
        {"champion": {"uri": "/srv/m/1", "source": "tf_serving", "version": "1", "reason": ""}},
        {**rec(champ.CHAMPION, accuracy), **extra},
    )


RECORDS = [rec("baseline", 0.90), rec("pruned", 0.95)]


def test_a_candidate_must_beat_the_champion_by_the_change_threshold():
    policy = sel.SelectionPolicy(objective="most_accurate", max_accuracy_drop=10)
    s = sel.select_candidate(RECORDS, "baseline", policy, _champion(0.92))
    assert s.selected == "pruned"
    assert s.reasons["baseline"] == [
        "accuracy change -2.00 points vs the champion (TF Serving version 1) (92.00%) < +0 points"
    ]
    kept = sel.select_candidate(RECORDS, "baseline", policy, _champion(0.96))
    assert not kept.blessed and "the champion (96.00% on this test split) stays" in kept.reason
    absolute = sel.SelectionPolicy(max_accuracy_drop=10, min_accuracy_change=4.0)
    assert not sel.select_candidate(RECORDS, "baseline", absolute, _champion(0.92)).blessed
    # relative, as TFMA: (0.95 - 0.92) / 0.92 = 3.26% >= 3; (0.90 - 0.92) / 0.92 < 3
    relative = sel.SelectionPolicy(
        max_accuracy_drop=10, min_accuracy_change=3.0, change_mode="relative"
    )
    s = sel.select_candidate(RECORDS, "baseline", relative, _champion(0.92))
    assert s.selected == "pruned" and "-2.17 % vs the champion" in s.reasons["baseline"][0]
    assert champ.accuracy_change(0.95, 0.92, "relative") == pytest.approx(3.2609, abs=1e-4)
    with pytest.raises(Exception, match="change_mode='percent' is not allowed"):
        sel.SelectionPolicy(change_mode="percent")


def test_without_an_evaluated_champion_the_value_thresholds_alone_apply():
    policy = sel.SelectionPolicy(objective="most_accurate", max_accuracy_drop=10)
    broken = _champion(0.99, error="ModelError: predictions have shape (4, 9)")
    assert not broken["evaluated"] and "could not be evaluated" in broken["reason"]
    s = sel.select_candidate(RECORDS, "baseline", policy, broken)
    assert s.selected == "pruned" and not any(s.reasons.values())
    none = champ.champion_entry({"champion": {"uri": "", "reason": "a first run"}}, None)
    assert not none["evaluated"]
    assert sel.select_candidate(RECORDS, "baseline", policy, none).selected == "pruned"


def test_the_champion_is_listed_in_the_table_and_the_reports(tmp_path):
    dv = {
        "champion": {"uri": "/srv/m/1", "source": "tf_serving", "version": "1", "reason": ""},
        "validation": {"status": "passed", "thresholds": {}, "anomalies": [], "features": []},
    }
    evaluations = {
        "dataset": {"name": "d", "num_test": 10},
        "candidates": RECORDS,
        "champion": _champion(0.92),
        "data_validation": dv,
    }
    out = sel.select_and_report(
        evaluations,
        "baseline",
        sel.SelectionPolicy(max_accuracy_drop=10),
        "p",
        str(tmp_path / "s.json"),
        str(tmp_path / "r.md"),
        str(tmp_path / "r.html"),
        str(tmp_path / "card.md"),
    )
    summary = out.summary
    assert summary["champion"]["accuracy"] == 0.92 and summary["data_validation"] == dv
    assert [v["name"] for v in summary["variants"]] == ["baseline", "pruned"]  # no candidate
    table = format_table(summary)
    assert "  champion         saved_model   92.00%" in table
    assert "deployed champion (TF Serving v1): the reference" in table
    md = report.markdown_report(summary)
    assert "| champion | saved_model | 92.00 |" in md and "champion (TF Serving v1)" in md
    assert "accuracy change >= +0 points vs the champion (TF Serving v1), 92.00%" in md
    assert "## Data validation" in md and "Champion: TF Serving version 1 (stable)" in md
    assert "Data validation" in report.html_report(summary)


def test_a_named_champion_that_is_not_a_saved_model_is_refused_before_any_step(tmp_path):
    from tfopt.client import docker
    from tfopt.client.preflight import check_pipeline_params
    from tfopt.errors import ConfigError

    with pytest.raises(ConfigError, match=r"champion_uri='.*absent': not a SavedModel directory"):
        check_pipeline_params({"champion_uri": str(tmp_path / "absent")}, local=True)
    check_pipeline_params({"champion_uri": "none"}, local=True)
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "saved_model.pb").write_bytes(b"")
    check_pipeline_params({"champion_uri": str(tmp_path / "m")}, local=True)
    read, _ = docker._host_paths({"champion_uri": str(tmp_path / "m")}, str(tmp_path))
    assert read == [str(tmp_path / "m")]  # mounted read-only for --runner docker
    assert docker._host_paths({"champion_uri": "none"}, str(tmp_path))[0] == []
