"""The whole optimize pipeline under KFP's local SubprocessRunner, both sides of the gate."""

import json
import os

import pytest

from tfopt import registry
from tfopt.client.local import run_local
from tfopt.compression import techniques  # noqa: F401 - registers every technique

# Every step runs, on tiny budgets.
SMALL = {
    "arch": "cnn",
    "width": 8,
    "depth": 2,
    "epochs": 4,
    "early_stopping_patience": 0,
    "latency_iterations": 20,
    "representative_samples": 50,
    "prune_epochs": 1,
    "distill_epochs": 2,
    "lowrank_epochs": 1,
    "qat_epochs": 1,
    "max_accuracy_drop": 5.0,
}
# every variant the default pipeline makes reaches the summary (the registry is the wiring)
ALL_VARIANTS = {registry.BASELINE, *(n for n in registry.names() if registry.on_by_default(n))}


@pytest.fixture(scope="module")
def blessed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run_local(dict(SMALL), str(out))
    with open(out / "summary.json") as fh:
        assert json.load(fh)["variants"] == result["variants"]
    return result


@pytest.mark.slow
def test_summary_has_the_documented_shape(blessed_run):
    summary = blessed_run
    assert summary["pipeline"] == "tfopt-optimize"
    ds = summary["dataset"]
    assert ds["name"] == "builtin:digits"
    assert ds["num_train"] + ds.get("num_validation", 0) + ds["num_test"] == 1797
    assert abs(ds["num_test"] - 0.2 * 1797) <= 10  # stratified 20% test split
    assert ds["num_classes"] == 10 and isinstance(ds["num_classes"], int)
    assert summary["baseline"] == "baseline"
    assert {v["name"] for v in summary["variants"]} == ALL_VARIANTS
    for v in summary["variants"]:
        assert v["format"] in ("saved_model", "tflite")
        if v["name"] != registry.BASELINE:  # the registry says what each step makes
            assert v["format"] == registry.get(v["name"]).format, v["name"]
        assert os.path.exists(v["path"]), v["path"]
        assert 0.0 <= v["accuracy"] <= 1.0
        assert v["size_bytes"] > v["gzip_bytes"] > 0
        assert 0 < v["latency_ms_p50"] <= v["latency_ms_p99"]
        assert isinstance(v["rejected_reasons"], list)
    assert os.path.exists(summary["report_html"]) and os.path.exists(summary["model_card"])


@pytest.mark.slow
def test_blessed_run_deploys_the_selected_saved_model_and_smoke_tests_it(blessed_run):
    summary = blessed_run
    assert summary["blessed"] is True
    selected = next(v for v in summary["variants"] if v["name"] == summary["selected"])
    assert selected["format"] == "saved_model"  # the default target is TF Serving
    assert selected["rejected_reasons"] == []
    serving = summary["serving"]
    assert serving["smoke_test"] == "passed" and serving["version"] == 1
    assert os.path.isdir(os.path.join(serving["model_base_path"], serving["model_name"], "1"))
    by_name = {v["name"]: v for v in summary["variants"]}
    f32, i8 = by_name["tflite_float32"], by_name["tflite_int8"]
    assert i8["size_bytes"] < 0.5 * f32["size_bytes"]  # tiny model: fixed overhead weighs
    # 80% of the pruned layers; the first conv and the output layer stay dense
    assert 0.7 <= by_name["pruned"]["sparsity"] < 0.8
    assert by_name["distilled"]["params"] <= by_name["baseline"]["params"]  # tiny baseline here


@pytest.mark.slow
def test_unmet_targets_are_not_blessed_and_nothing_is_deployed(tmp_path):
    params = {
        **SMALL,
        "max_size_bytes": 1,
        "enable_pruning": False,
        "enable_distillation": False,
        "enable_lowrank": False,
        "enable_qat": False,
        "enable_tflite_dynamic": False,
        "enable_tflite_float16": False,
    }
    summary = run_local(params, str(tmp_path))
    assert summary["blessed"] is False and summary["selected"] is None
    assert summary["serving"] is None
    assert not os.path.exists(tmp_path / "serving")
    names = {v["name"] for v in summary["variants"]}
    assert names == {"baseline", "tflite_float32", "tflite_int8"}  # disabled ones skipped
    assert all(v["rejected_reasons"] for v in summary["variants"])


@pytest.mark.slow
def test_litert_quantizer_variants_run_when_switched_on(tmp_path):
    litert = [v for v in registry.variants() if v.technique == "litert"]
    params = {
        **SMALL,
        "enable_pruning": False,
        "enable_distillation": False,
        "enable_lowrank": False,
        "enable_qat": False,
        "enable_tflite_dynamic": False,
        "enable_tflite_float16": False,
        "enable_litert_quantizer": True,
    }
    summary = run_local(params, str(tmp_path))
    by_name = {v["name"]: v for v in summary["variants"]}
    assert {v.name for v in litert} <= set(by_name)
    f32 = by_name["tflite_float32"]
    for v in litert:
        got = by_name[v.name]
        assert got["format"] == "tflite" and os.path.exists(got["path"]), v.name
        assert got["size_bytes"] < f32["size_bytes"], v.name  # every recipe quantizes weights
        assert got["accuracy"] >= f32["accuracy"] - 0.03, v.name
    assert by_name["litert_int4_weight_only"]["size_bytes"] < by_name["litert_int8"]["size_bytes"]


@pytest.mark.slow
def test_steps_at_the_same_time_give_what_one_at_a_time_gives(blessed_run, tmp_path):
    """Issue 33: the same seed gives the same variants, accuracies, sizes and selection,
    whether the steps run two at a time or one at a time (latency figures aside)."""
    # the module's run took the default (one step per core); this one the other way
    other = 2 if blessed_run["parallelism"] == 1 else 1
    again = run_local(dict(SMALL), str(tmp_path), parallelism=other)
    assert again["parallelism"] == other

    def figures(summary):
        return {
            v["name"]: (v["accuracy"], v["f1"], v["params"], v["rejected_reasons"])
            for v in summary["variants"]
        }

    assert figures(blessed_run) == figures(again)
    # a SavedModel's gzip differs by a few bytes between two saves of the same weights
    sizes = [{v["name"]: v["size_bytes"] for v in s["variants"]} for s in (blessed_run, again)]
    assert all(abs(sizes[0][n] - sizes[1][n]) <= 16 for n in sizes[0])
    assert (blessed_run["selected"], blessed_run["blessed"]) == (
        again["selected"],
        again["blessed"],
    )


@pytest.mark.slow
def test_the_techniques_off_by_default_run_when_switched_on(tmp_path):
    """Structured pruning (issue 31) and clustering (issue 29), with their children, in one
    local run: each a smaller model than the baseline, within the accuracy budget; with
    search on (issue 32), structured pruning searched under a budget of 2 trials and its
    trials in the report, clustering's search cut (it cannot win on the objective)."""
    params = {
        **SMALL,
        "enable_pruning": False,
        "enable_distillation": False,
        "enable_lowrank": False,
        "enable_tflite_dynamic": False,
        "enable_tflite_float16": False,
        "enable_channel_pruning": True,
        "channel_sparsity": 0.4,
        "channel_prune_epochs": 2,
        "enable_clustering": True,
        "cluster_epochs": 1,
        "search": True,
        "search_trials": 2,
        "deploy_target": "none",
    }
    summary = run_local(params, str(tmp_path))
    by_name = {v["name"]: v for v in summary["variants"]}
    with open(summary["report_html"], encoding="utf-8") as fh:
        page = fh.read()
    search = by_name["channel_pruned"]["search"]
    assert search["knob"] == "flops_fraction" and 1 <= len(search["trials"]) <= 2
    assert all("validation_accuracy" in t for t in search["trials"])  # never the test split
    assert "<h2>Search: channel_pruned over flops_fraction</h2>" in page
    # fewer clusters shrink the gzip size, not the file the objective (smallest) ranks by
    cut = by_name["clustered"]["search"]
    assert cut["trials"] == [] and cut["cut"].startswith("objective smallest: ")
    assert "<h2>Search: clustered over cluster_count</h2>" in page
    base = by_name[registry.BASELINE]
    made = ("channel_pruned", "channel_pruned_int8", "clustered", "clustered_int8", "cqat_int8")
    for name in made:
        got = by_name[name]
        assert not got.get("error"), (name, got.get("error"))
        assert got["format"] == registry.get(name).format and os.path.exists(got["path"]), name
    # structured pruning makes a genuinely smaller dense model; clustering a smaller gzip
    assert by_name["channel_pruned"]["params"] < base["params"]
    assert by_name["channel_pruned"]["size_bytes"] < base["size_bytes"]
    assert by_name["clustered"]["gzip_bytes"] < base["gzip_bytes"]
    for name in ("channel_pruned", "clustered"):
        assert by_name[name]["accuracy"] >= base["accuracy"] - 0.05, name


@pytest.mark.slow
def test_what_cannot_be_picked_is_not_made_and_says_why(tmp_path):
    """``skip_non_contenders`` with TF Serving, objective smallest: pruning's SavedModel
    (its zeros are stored) and every TFLite variant are not made; their steps are no-ops
    and the summary, the console table and the report list them as not made, with why."""
    params = {
        **SMALL,
        "enable_distillation": False,
        "enable_qat": False,
        "enable_tflite_dynamic": False,
        "enable_tflite_float16": False,
        "skip_non_contenders": True,
    }
    summary = run_local(params, str(tmp_path))
    by_name = {v["name"]: v for v in summary["variants"]}
    not_made = {"pruned", "pruned_int8", "tflite_float32", "tflite_int8", "lowrank_int8"}
    assert {n for n, v in by_name.items() if v.get("not_made")} == not_made
    assert by_name["pruned"]["error"].startswith("not a contender: objective smallest: ")
    assert by_name["tflite_int8"]["error"] == (
        "not a contender: deploy target tf_serving serves saved_model only"
    )
    for name in not_made:  # nothing was written but the no-op's note
        assert not by_name[name]["path"] and by_name[name]["accuracy"] is None, name
    assert by_name["lowrank"]["accuracy"] is not None and summary["selected"] not in not_made
    with open(summary["report_html"], encoding="utf-8") as fh:
        page = fh.read()
    assert page.count(">not made<") == len(not_made)
