"""Every compiled pipeline loads into Vertex AI's PipelineJob and back through kfp's loader.

What the console does with an uploaded YAML: Vertex parses it into a
PipelineJob (pipeline spec + runtime config with every parameter defaulted),
KFP loads it as a component. Nothing is sent anywhere: PipelineJob() only
builds the request locally.
"""

from __future__ import annotations

import os

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from kfp import components

from tfopt.pipelines.compile import PIPELINES, compile_all


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, str]:
    paths = compile_all(str(tmp_path_factory.mktemp("compiled")))
    assert len(paths) == 2 * len(PIPELINES)  # a Kubeflow and a Vertex flavour of each
    return {os.path.basename(p).removesuffix(".yaml"): p for p in paths}


def test_every_pipeline_loads_into_vertex_pipeline_job(compiled):
    from google.cloud import aiplatform

    vertex = {k: v for k, v in compiled.items() if k.endswith(".vertex")}
    assert sorted(vertex) == sorted(f"{name}.vertex" for name in PIPELINES)
    for name, path in vertex.items():
        with open(path) as fh:
            doc = next(yaml.safe_load_all(fh))  # 2nd document: platform spec
        declared = doc["root"]["inputDefinitions"]["parameters"]
        # Pressing Run without typing anything: every parameter has a default.
        defaults = {k: p["defaultValue"] for k, p in declared.items() if "defaultValue" in p}
        assert sorted(defaults) == sorted(declared), name
        # Vertex checks names and types of the values it is given against the spec.
        job = aiplatform.PipelineJob(
            display_name=f"{name}-check",
            template_path=path,
            parameter_values=defaults,
            pipeline_root="gs://bucket/root",
            project="test-project",
            location="us-central1",
            credentials=AnonymousCredentials(),
        )
        spec = job._gca_resource.pipeline_spec
        assert spec["pipelineInfo"]["name"] == doc["pipelineInfo"]["name"], name
        assert doc["pipelineInfo"].get("description"), f"{name}: no description for the console"
        assert sorted(job._gca_resource.runtime_config.parameter_values) == sorted(declared)
        with pytest.raises(ValueError):
            aiplatform.PipelineJob(
                display_name="x",
                template_path=path,
                parameter_values={"no_such_parameter": 1},
                pipeline_root="gs://bucket/root",
                project="test-project",
                location="us-central1",
                credentials=AnonymousCredentials(),
            )
        assert job._gca_resource.runtime_config.gcs_output_directory == "gs://bucket/root"


def test_every_pipeline_loads_back_through_kfp(compiled):
    for name, path in compiled.items():
        loaded = components.load_component_from_file(path)
        with open(path) as fh:
            doc = next(yaml.safe_load_all(fh))  # 2nd document: platform spec
        assert loaded.name == doc["pipelineInfo"]["name"], name
        assert set(loaded.component_spec.inputs or {}) == set(
            doc["root"]["inputDefinitions"]["parameters"]
        ), name
        assert all(spec.optional for spec in (loaded.component_spec.inputs or {}).values()), name
