"""The pipeline of a user's own in docs/components.md (their training step, then tfopt's
compression, evaluation and select steps, loaded from the YAML files ``tfopt compile
--components`` writes) compiles, and runs under KFP's local runner on tiny budgets."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import yaml
from kfp import compiler, local

from tfopt.client import component_docs
from tfopt.client.warm import WarmStart
from tfopt.pipelines.compile import compile_components

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USED = ("ingest", "tflite", "prune", "evaluate", "select")


@pytest.mark.slow
def test_the_docs_user_pipeline_compiles_and_runs_locally(tmp_path, monkeypatch):
    compile_components(str(tmp_path / "components"), USED)
    monkeypatch.setenv("TFOPT_COMPONENTS", str(tmp_path / "components"))
    with open(os.path.join(ROOT, "docs", "components.md")) as fh:
        source = component_docs.example_source(fh.read())
    path = tmp_path / "my_pipeline.py"  # a file: KFP embeds my_train's source from it
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("my_pipeline", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    package = tmp_path / "my_pipeline.yaml"
    compiler.Compiler().compile(module.my_pipeline, str(package))
    doc = yaml.safe_load(package.read_text())
    assert doc["pipelineInfo"]["name"] == "my-optimize"
    assert {"comp-my-train", "comp-tflite", "comp-prune", "comp-evaluate", "comp-select"} <= set(
        doc["components"]
    )

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path / "root"),
        raise_on_error=True,
    )
    with WarmStart():  # tfopt's steps forked from one pre-imported parent: the same steps, faster
        task = module.my_pipeline(source="builtin:digits", max_examples=400, epochs=20)
    with open(task.output.path) as fh:
        summary = json.load(fh)
    assert summary["pipeline"] == "my-optimize"
    assert {v["name"] for v in summary["variants"]} == {"baseline", "tflite_int8", "pruned"}
    by_name = {v["name"]: v for v in summary["variants"]}
    assert by_name["tflite_int8"]["format"] == "tflite"
    assert by_name["baseline"]["accuracy"] > 0.5  # my training learned the digits
    assert summary["selected"] in by_name
