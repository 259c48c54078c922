"""deploy_target kserve in the compiled Kubeflow pipeline and in a submit params file."""

import pytest
import yaml

from tfopt.client.parameter_docs import check_cluster_params
from tfopt.client.params import load_params
from tfopt.errors import ConfigError
from tfopt.pipelines.compile import compile_pipeline

NEW = ("kserve_storage_uri", "kserve_namespace", "model_registry_host")


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = compile_pipeline("optimize", str(tmp_path_factory.mktemp("yaml") / "optimize.yaml"))
    with open(path) as fh:
        return next(yaml.safe_load_all(fh))


def test_the_kubeflow_yaml_carries_the_kserve_branch_and_its_parameters(spec):
    params = spec["root"]["inputDefinitions"]["parameters"]
    for name in NEW:
        assert params[name]["defaultValue"] == "" and params[name]["description"], name
    assert "kserve" in params["deploy_target"]["description"]
    blessed = spec["components"]["comp-gate-blessed"]["dag"]["tasks"]
    gate = blessed["gate-kserve"]
    assert "kserve" in gate["triggerPolicy"]["condition"]
    task = spec["components"]["comp-gate-kserve"]["dag"]["tasks"]["deploy-kserve"]
    inputs = task["inputs"]
    assert inputs["artifacts"]["summary"]["componentInputArtifact"].endswith("select-summary")
    wired = {k: v.get("componentInputParameter") for k, v in inputs["parameters"].items()}
    assert wired["storage_uri"] == "pipelinechannel--kserve_storage_uri"
    assert wired["namespace"] == "pipelinechannel--kserve_namespace"
    assert wired["model_registry_host"] == "pipelinechannel--model_registry_host"
    assert wired["accelerator_type"] == "pipelinechannel--accelerator_type"
    assert inputs["parameters"]["pipeline_run"]["runtimeValue"]["constant"] == (
        "{{$.pipeline_job_name}}"
    )
    assert "deploy-kserve" not in spec["root"]["dag"]["tasks"]


def test_submit_params_file_takes_the_kserve_parameters(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "deploy_target": "kserve",
                "serving_base_path": "/mnt/models/repo",
                "kserve_storage_uri": "pvc://tfopt-models/repo",
                "kserve_namespace": "team-a",
                "model_registry_host": "http://model-registry-service.kubeflow:8080",
            }
        )
    )
    params = load_params(str(path))
    check_cluster_params(params)
    assert {k: params[k] for k in NEW} == {
        "kserve_storage_uri": "pvc://tfopt-models/repo",
        "kserve_namespace": "team-a",
        "model_registry_host": "http://model-registry-service.kubeflow:8080",
    }
    path.write_text(yaml.safe_dump({"deploy_target": "kserve", "serving_base_path": "/data"}))
    with pytest.raises(ConfigError, match="local path the cluster's predictor pods cannot read"):
        load_params(str(path))
