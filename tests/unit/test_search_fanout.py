"""The search fan-out's trial values and its pick (issue 32): the same rule and the same
record as the bisection's, on given trial records."""

import pytest

from tfopt import registry
from tfopt.compression import prune, search, techniques  # noqa: F401 - registers them


def _knob(technique: str):
    return search.knob(registry.get_technique(technique))


def _trial(knob: str, value, fits: bool) -> dict:
    return {knob: value, "validation_accuracy": 0.9, "drop_points": 0.0, "fits": fits}


def test_the_trial_values_are_evenly_spaced_toward_the_strong_end_which_is_tried():
    sparsity = _knob("prune")  # 0.5 -> 0.95
    assert search.grid(sparsity, 4) == [0.6125, 0.725, 0.8375, 0.95]
    assert search.grid(sparsity, 1) == [0.95]  # one trial: the strong end, as the bisection
    clusters = _knob("cluster")  # 64 -> 4: stronger is fewer
    assert search.grid(clusters, 3) == [44, 24, 4]
    assert all(isinstance(v, int) for v in search.grid(clusters, 3))
    width = _knob("distill")  # 32 -> 2: 100 steps give each width once, the weak end not
    values = search.grid(width, 100)
    assert values == list(range(31, 1, -1))


def test_the_pick_is_the_strongest_value_that_fits_else_the_weak_end():
    s = _knob("prune")
    trials = [_trial("target_sparsity", v, f) for v, f in ((0.6125, True), (0.725, True),
              (0.8375, False), (0.95, False))]  # fmt: skip
    assert search.strongest_fit(s, trials) == (0.725, True)
    # not monotone (noise): still the strongest that fitted
    trials[3]["fits"] = True
    assert search.strongest_fit(s, trials) == (0.95, True)
    assert search.strongest_fit(s, [_trial("target_sparsity", 0.95, False)]) == (0.5, False)
    c = _knob("cluster")  # decreasing: the strongest is the smallest count
    counts = [_trial("cluster_count", v, f) for v, f in ((44, True), (24, True), (4, False))]
    assert search.strongest_fit(c, counts) == (24, True)
    assert search.strongest_fit(c, [_trial("cluster_count", 4, False)]) == (64, False)


def test_the_fanout_writes_the_record_and_note_the_bisection_writes():
    t = registry.get_technique("prune")
    config = prune.PruneConfig(max_accuracy_drop=0.5)
    trials = [_trial("target_sparsity", 0.725, True), _trial("target_sparsity", 0.95, False)]
    record = search.pick(t, config, trials)
    assert record == {
        "knob": "target_sparsity",
        "chosen": 0.725,
        "max_accuracy_drop": 0.5,
        "trials": trials,
    }
    made = registry.Outcome(metrics={"sparsity": 0.7}, model={"params": 10}, notes=["made"])
    outcome = search.searched(made, search.knob(t), record, how=" in parallel")
    assert outcome.model == {"params": 10, "search": record}
    assert outcome.metrics == {"sparsity": 0.7, "search_trials": 2, "search_chosen": 0.725}
    assert outcome.notes == [
        "made",
        "search over target_sparsity 0.5 -> 0.95 on the validation split: 2 trial(s) in "
        "parallel, chose 0.725",
    ]


@pytest.mark.slow
def test_one_fanout_trial_on_digits_is_recorded_as_a_bisection_trial(cnn, digits_dir):
    t = registry.get_technique("prune")
    config = prune.PruneConfig(epochs=3, max_accuracy_drop=1.0)
    trial = search.fanout_trial(t, cnn, digits_dir, config, 0.8)
    assert trial["target_sparsity"] == 0.8 and isinstance(trial["target_sparsity"], float)
    assert set(trial) == {"target_sparsity", "validation_accuracy", "drop_points", "drop",
                          "fits", "size_bytes", "gzip_bytes", "seconds"}  # fmt: skip
    assert 0.5 <= trial["validation_accuracy"] <= 1.0  # the tiny CNN, 80% of weights gone
    assert trial["fits"] == (trial["drop_points"] <= 1.0 or "within noise" in trial["drop"])
    assert trial["size_bytes"] > trial["gzip_bytes"] > 0


def test_a_fanout_cut_for_the_objective_runs_no_trial_and_records_why(tmp_path):
    import json

    from kfp import dsl

    from tfopt.components import _search_trial

    t = registry.get_technique("prune")  # sparsity: not one byte nor multiply-add less
    model = dsl.Model(uri=str(tmp_path / "m"), metadata={})
    args = {"model": model, "search": True, "search_trials": 4, "objective": "fastest",
            "target_sparsity": 0.8, "enabled": True}  # fmt: skip
    assert _search_trial.values("prune", "target_sparsity", dict(args)) == [0.8]  # one no-op
    trial = _search_trial.trial("prune", {**args, "dataset": None, "variant": "pruned"})
    assert json.loads(trial)["cut"] == search.cut(t, prune.PruneConfig(objective="fastest"))
    out = dsl.Artifact(uri=str(tmp_path / "record.json"))
    given = {"target_sparsity": 0.8, "max_accuracy_drop": 1.0}
    assert _search_trial.pick("prune", [trial], given, out) == 0.8  # the configured value
    with open(out.path) as fh:
        written = json.load(fh)
    assert written["trials"] == [] and written["cut"] == json.loads(trial)["cut"]
    made = _search_trial.attach(t, registry.Outcome(metrics={}, model={}, notes=[]), out)
    assert made.model["search"] == written and made.metrics["search_trials"] == 0
    assert made.notes == [f"search over target_sparsity cut before any trial: {written['cut']}"]
