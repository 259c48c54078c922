"""``tfopt compile --search-fanout``: each searched variant's trials as a dsl.ParallelFor with
the parallelism limit asked, loadable by kfp and by Vertex AI's PipelineJob; the default
compile has no loop."""

from __future__ import annotations

import os

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from kfp import components

from tfopt import registry
from tfopt.cli import main
from tfopt.compression import search, techniques  # noqa: F401 - registers every technique
from tfopt.errors import ConfigError
from tfopt.pipelines.compile import compile_pipeline

# the variants whose technique has a strength knob: each gets a trial loop
SEARCHED = {
    v.task: search.knob(registry.get_technique(v.technique)).name
    for v in registry.variants()
    if search.knob(registry.get_technique(v.technique))
}


def _doc(path: str) -> dict:
    with open(path) as fh:
        return next(yaml.safe_load_all(fh))  # 2nd document: platform spec


def _loops(doc: dict) -> dict[str, dict]:
    """Display name -> task, for every ParallelFor in the pipeline's root DAG."""
    tasks = doc["root"]["dag"]["tasks"].values()
    return {t["taskInfo"]["name"]: t for t in tasks if "parameterIterator" in t}


@pytest.fixture(scope="module")
def fanout(tmp_path_factory) -> dict[str, str]:
    """The fan-out flavour compiled by the CLI, as a user would, with a limit of 3."""
    out = tmp_path_factory.mktemp("fanout")
    args = ["compile", "--output-dir", str(out), "--search-fanout", "--search-parallelism", "3"]
    assert main(args) == 0
    return {t: str(out / f"optimize{s}.yaml") for t, s in (("kubeflow", ""), ("vertex", ".vertex"))}


def test_every_searched_variant_has_a_trial_loop_with_the_limit_asked(fanout):
    doc = _doc(fanout["kubeflow"])
    loops = _loops(doc)
    assert sorted(loops) == sorted(f"{task}-search" for task in SEARCHED)
    assert len(SEARCHED) >= 5  # pruning, structured pruning, distillation, low-rank, clustering
    for task, knob in SEARCHED.items():
        loop = loops[f"{task}-search"]
        assert loop["iteratorPolicy"] == {"parallelismLimit": 3}
        assert loop["parameterIterator"]["items"]["inputParameter"].endswith(
            "-search-values-Output"
        )
        inner = doc["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
        (trial,) = inner.values()
        assert trial["taskInfo"]["name"] == f"{task}-trial"
        fed = trial["inputs"]["parameters"][knob]["componentInputParameter"]
        assert fed.endswith("-loop-item")  # each iteration tries its own value of the knob


def test_the_variants_step_takes_the_picked_value_with_search_off_and_the_record(fanout):
    doc = _doc(fanout["kubeflow"])
    by_name = {t["taskInfo"]["name"]: t for t in doc["root"]["dag"]["tasks"].values()}
    for task, knob in SEARCHED.items():
        step, pick = by_name[task], by_name[f"{task}-search-pick"]
        params = step["inputs"]["parameters"]
        assert params["search"]["runtimeValue"]["constant"] is False
        assert params[knob]["taskOutputParameter"] == {
            "outputParameterKey": "Output",
            "producerTask": next(k for k, v in doc["root"]["dag"]["tasks"].items() if v is pick),
        }
        record = step["inputs"]["artifacts"]["search_record"]["taskOutputArtifact"]
        assert record["outputArtifactKey"] == "search_record"
        collected = pick["inputs"]["parameters"]["trials"]["taskOutputParameter"]
        assert collected["producerTask"].startswith("for-loop-")  # dsl.Collected over the loop


def test_the_fanout_loads_back_through_kfp_and_into_vertex(fanout):
    from google.cloud import aiplatform

    for path in fanout.values():
        loaded = components.load_component_from_file(path)
        assert loaded.name == "tfopt-optimize"
        declared = _doc(path)["root"]["inputDefinitions"]["parameters"]
        assert set(loaded.component_spec.inputs) == set(declared)
        assert {"search", "search_trials"} <= set(declared)
    declared = _doc(fanout["vertex"])["root"]["inputDefinitions"]["parameters"]
    values = {k: p["defaultValue"] for k, p in declared.items()}
    job = aiplatform.PipelineJob(
        display_name="fanout-check",
        template_path=fanout["vertex"],
        parameter_values={**values, "search": True, "search_trials": 4},
        pipeline_root="gs://bucket/root",
        project="test-project",
        location="us-central1",
        credentials=AnonymousCredentials(),
    )
    tasks = job._gca_resource.pipeline_spec["root"]["dag"]["tasks"]
    assert sum("parameterIterator" in t for t in tasks.values()) == len(SEARCHED)


def test_the_default_compile_has_no_loop(tmp_path):
    path = compile_pipeline("optimize", str(tmp_path / "optimize.yaml"))
    doc = _doc(path)
    assert _loops(doc) == {}
    assert not any("search-values" in name for name in doc["root"]["dag"]["tasks"])


def test_a_parallelism_limit_without_the_fanout_or_below_zero_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="add --search-fanout"):
        compile_pipeline("optimize", str(tmp_path / "a.yaml"), search_parallelism=2)
    with pytest.raises(ConfigError, match="expected an integer >= 0"):
        compile_pipeline(
            "optimize", str(tmp_path / "b.yaml"), search_fanout=True, search_parallelism=-1
        )
    assert not os.listdir(tmp_path)
