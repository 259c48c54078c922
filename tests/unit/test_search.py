"""The search over a technique's strength knob (issue 32): bounded by its budget, on the
validation split only (the test split is not even there), every trial recorded."""

import json
import os
import shutil

import pytest

from tfopt import registry
from tfopt.compression import channel_prune, distill, prune, search, techniques  # noqa: F401
from tfopt.errors import ConfigError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def no_test_split(tmp_path_factory, digits_dir):
    """The digits dataset without its test split: a search that read it would fail."""
    copy = tmp_path_factory.mktemp("no_test") / "digits"
    shutil.copytree(digits_dir, copy)
    schema = json.loads((copy / "schema.json").read_text())
    for shard in schema["splits"].pop("test")["shards"]:
        os.remove(copy / shard)
    (copy / "schema.json").write_text(json.dumps(schema))
    return str(copy)


def test_the_search_finds_a_setting_within_the_budget_and_records_every_trial(
    tmp_path, cnn, no_test_split
):
    t = registry.get_technique("channel_prune")
    config = channel_prune.ChannelPruneConfig(
        epochs=3, round_to=4, search=True, search_trials=3, max_accuracy_drop=1.0
    )
    outcome = search.apply(t, cnn, no_test_split, str(tmp_path / "pruned"), config)
    record = outcome.model["search"]
    assert record["knob"] == "flops_fraction" and "cut" not in record
    assert 1 <= len(record["trials"]) <= 3  # the trial budget holds
    assert record["trials"][0]["flops_fraction"] == 0.8  # the strong end first
    for trial in record["trials"]:
        assert set(trial) >= {"validation_accuracy", "drop", "fits", "size_bytes", "seconds"}
        assert 0.2 <= trial["flops_fraction"] <= 0.8
    fitted = [tr["flops_fraction"] for tr in record["trials"] if tr["fits"]]
    # the chosen value is the strongest that fitted (or the weak end when none did)
    assert record["chosen"] == (max(fitted) if fitted else 0.2)
    assert outcome.metrics["search_trials"] == len(record["trials"])
    assert any(n.startswith("search over flops_fraction 0.2 -> 0.8") for n in outcome.notes)
    assert os.path.exists(tmp_path / "pruned" / "saved_model.pb")  # the winner, made in full


@pytest.mark.parametrize("objective", ["smallest", "fastest", "most_accurate"])
def test_a_search_that_cannot_win_on_the_objective_is_cut_before_any_trial(
    tmp_path, cnn, no_test_split, objective
):
    t = registry.get_technique("prune")  # sparsity changes no byte nor multiply-add
    config = prune.PruneConfig(epochs=1, search=True, objective=objective, target_sparsity=0.6)
    outcome = search.apply(t, cnn, no_test_split, str(tmp_path / "pruned"), config)
    record = outcome.model["search"]
    assert record["trials"] == [] and record["chosen"] == 0.6  # made once, as configured
    assert record["cut"].startswith(f"objective {objective}: ")
    assert outcome.metrics["search_trials"] == 0 and outcome.model["sparsity"] >= 0.55
    assert outcome.notes[-1] == f"search over target_sparsity cut before any trial: {record['cut']}"


def test_the_cut_follows_what_each_technique_can_improve():
    def reason(name: str, objective: str) -> str:
        t = registry.get_technique(name)
        return search.cut(t, t.make_config({"objective": objective}))

    for name in ("channel_prune", "distill", "lowrank"):  # fewer weights and multiply-adds
        assert reason(name, "smallest") == reason(name, "fastest") == ""
        assert "costs accuracy" in reason(name, "most_accurate")
    for name in ("prune", "cluster"):  # the same dense file, bytes and FLOPs
        assert "gzip size only" in reason(name, "smallest")
        assert "gzip size only" in reason(name, "fastest")


def test_a_spent_time_budget_stops_the_search_and_says_so(tmp_path, cnn, no_test_split):
    t = registry.get_technique("channel_prune")
    config = channel_prune.ChannelPruneConfig(
        epochs=1, round_to=4, search=True, search_trials=10, search_minutes=0.001,
        max_accuracy_drop=0.0,
    )  # fmt: skip
    outcome = search.apply(t, cnn, no_test_split, str(tmp_path / "pruned"), config)
    trials = outcome.model["search"]["trials"]
    assert len(trials) == 1  # the strong end fitted, or the spent budget ended the search
    if not trials[0]["fits"]:
        assert "stopped: search_budget_minutes=0.001 spent" in outcome.notes[-1]


def test_without_search_the_technique_runs_once_as_configured(tmp_path, cnn, digits_dir):
    t = registry.get_technique("prune")
    outcome = search.apply(t, cnn, digits_dir, str(tmp_path / "p"), prune.PruneConfig(epochs=1))
    assert "search" not in outcome.model and "search_trials" not in outcome.metrics


def test_every_knob_runs_from_weak_to_strong_within_its_settings_range():
    for t in registry.techniques():
        s = search.knob(t)
        if s is None:
            continue
        for end in s.search:  # both ends are allowed values of the setting
            t.make_config({s.name: s.type(end)})


def test_a_distillation_trial_reads_no_test_split(tmp_path, cnn, no_test_split):
    t = registry.get_technique("distill")
    config = distill.DistillConfig(epochs=1, search=True, train_scratch=True)
    judge = search.Validation(cnn, no_test_split)
    knob = search.knob(t)
    record = search.trial(t, knob, cnn, no_test_split, config, 4, judge)
    assert record["student_width"] == 4 and record["validation_accuracy"] > 0.1


def test_a_resuming_technique_trains_its_winning_trial_on_instead_of_anew(
    tmp_path, cnn, digits_dir
):
    t = registry.get_technique("distill")
    assert t.resumes == "student_init"
    config = distill.DistillConfig(
        epochs=3, batch_size=64, search=True, search_trials=1, max_accuracy_drop=100.0
    )  # every trial fits: the strong end (width 2) is chosen from its one trial
    outcome = search.apply(t, cnn, digits_dir, str(tmp_path / "student"), config)
    assert outcome.model["search"]["chosen"] == 2
    assert outcome.notes[-1].endswith("the final trained on from its trial's model (1 + 2 epochs)")
    spe = -(-outcome.metrics["transfer_examples"] // 64)
    assert outcome.metrics["steps"] == 2 * spe  # the final trained the epochs left, not 3
    fresh = distill.distill_model(
        cnn, digits_dir, str(tmp_path / "fresh"), distill.DistillConfig(student_width=2, epochs=1)
    )
    assert outcome.metrics["student_params"] == fresh.student_params  # the trial's student


def test_a_student_to_train_on_must_exist(tmp_path, cnn, digits_dir):
    config = distill.DistillConfig(student_init=str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match=r"student_init=.*nowhere'.*no saved student there"):
        distill.distill_model(cnn, digits_dir, str(tmp_path / "s"), config)
    assert not os.path.exists(tmp_path / "s")


def test_a_technique_that_resumes_names_a_setting_of_its_config():
    with pytest.raises(ConfigError, match=r"resumes='nope'.*needs that setting and 'epochs'"):
        registry.Technique("x", "", distill.DistillConfig, lambda *a: None, resumes="nope")
