"""The search fan-out (``tfopt compile --search-fanout``) of one variant, structured pruning,
under KFP's
local runner on the digits data: values -> ParallelFor of trials -> pick -> the variant's
step with the knob at the pick, the model carrying the record the bisection writes.

The whole fan-out pipeline would also train and make every other variant (minutes here),
so the test wires the fan-out of one variant exactly as the pipeline does
(``search_fanout.variant_step``) on the session's trained CNN."""

import json
import os

import pytest
from kfp import dsl, local

from tfopt import registry
from tfopt.client.warm import WarmStart
from tfopt.compression import techniques  # noqa: F401 - registers every technique
from tfopt.pipelines import search_fanout


@dsl.pipeline(name="channel-prune-search-fanout")
def _one_variant(model_uri: str, dataset_uri: str, search: bool, enabled: bool) -> dsl.Model:
    model = dsl.importer(
        artifact_uri=model_uri,
        artifact_class=dsl.Model,
        metadata={"variant": "baseline", "format": "saved_model"},
    ).output
    dataset = dsl.importer(artifact_uri=dataset_uri, artifact_class=dsl.Dataset).output
    inputs = {
        "model": model,
        "dataset": dataset,
        "variant": "channel_pruned",
        "enabled": enabled,
        "search": search,
        "search_trials": 2,
        "objective": "smallest",
        "epochs": 3,  # a trial fine-tunes 1 epoch
        "max_accuracy_drop": 5.0,
        "flops_fraction": 0.5,
        "round_to": 4,
    }
    task = search_fanout.variant_step(registry.get("channel_pruned"), inputs, parallelism=2)
    return task.outputs["compressed_model"]


@pytest.fixture
def run(tmp_path, cnn, digits_dir):
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )

    def run(**params):
        with WarmStart():  # the steps forked from one pre-imported parent
            task = _one_variant(model_uri=cnn, dataset_uri=digits_dir, **params)
        return task.output

    return run


@pytest.mark.slow
def test_the_trials_fan_out_and_the_variant_is_made_at_the_pick(run):
    model = run(search=True, enabled=True)
    record = model.metadata["search"]
    assert record["knob"] == "flops_fraction" and record["max_accuracy_drop"] == 5.0
    trials = record["trials"]
    assert [t["flops_fraction"] for t in trials] == [0.5, 0.8]  # in value order
    assert all("validation_accuracy" in t for t in trials)  # never the test split
    fitted = [t["flops_fraction"] for t in trials if t["fits"]]
    assert record["chosen"] == (max(fitted) if fitted else 0.2)
    assert any("2 trial(s) in parallel (dsl.ParallelFor)" in n for n in model.metadata["notes"])
    assert os.path.exists(os.path.join(model.path, "saved_model.pb"))


@pytest.mark.slow
def test_with_the_variant_off_no_trial_runs_and_its_output_says_skipped(run):
    model = run(search=True, enabled=False)
    assert model.metadata["skipped"] is True and "search" not in model.metadata
    with open(model.path) as fh:
        assert json.load(fh)["skip_reason"] == "disabled by pipeline parameter"
