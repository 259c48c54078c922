"""The optimize pipeline compiles to YAML that names the image, defaults and the gate."""

import pytest
import yaml
from kfp import components

from tfopt import __version__
from tfopt.components._image import BASE_IMAGE, GPU_IMAGE
from tfopt.pipelines.compile import compile_pipeline


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("yaml") / "optimize.yaml")
    compile_pipeline("optimize", path)
    with open(path) as fh:
        return path, next(yaml.safe_load_all(fh))  # 2nd document: platform spec


def test_every_executor_runs_the_versioned_image_without_pip(compiled):
    _, spec = compiled
    executors = spec["deploymentSpec"]["executors"]
    assert executors
    containers = {n: ex["container"] for n, ex in executors.items() if "importer" not in ex}
    assert len(containers) >= 10
    for name, container in containers.items():
        assert container["image"] in (BASE_IMAGE, GPU_IMAGE), name
        assert BASE_IMAGE.endswith(":" + __version__)
        assert "pip install" not in " ".join(container["command"]), name


def test_every_parameter_has_a_default_and_the_pipeline_a_description(compiled):
    _, spec = compiled
    assert "digits" in spec["pipelineInfo"]["description"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["source"]["defaultValue"] == "builtin:digits"
    missing = [name for name, p in params.items() if "defaultValue" not in p]
    assert missing == []


def test_loads_back_through_kfp(compiled):
    path, _ = compiled
    loaded = components.load_component_from_file(path)
    assert loaded.name == "tfopt-optimize"
    assert set(loaded.component_spec.inputs) >= {"source", "epochs", "objective"}


def test_deploy_runs_only_under_the_blessed_and_infra_blessed_gates(compiled):
    _, spec = compiled
    dag = spec["root"]["dag"]["tasks"]
    gate = dag["gate-blessed"]
    assert "select" in gate["dependentTasks"]
    assert "pipelinechannel--select-Output" in gate["triggerPolicy"]["condition"]
    inner = spec["components"]["comp-gate-tf-serving"]["dag"]["tasks"]
    assert "infra-validate" in inner
    deploy_gate = spec["components"]["comp-gate-infra-blessed"]["dag"]["tasks"]
    assert "deploy-tf-serving" in deploy_gate
    assert "deploy-tf-serving" not in dag and "deploy-vertex" not in dag


def test_vertex_flavour_is_one_document_without_kubernetes_settings(tmp_path):
    path = compile_pipeline("optimize", str(tmp_path / "v.yaml"), target="vertex")
    with open(path) as fh:
        docs = list(yaml.safe_load_all(fh))
    assert len(docs) == 1 and "platforms" not in docs[0]
    with open(compile_pipeline("optimize", str(tmp_path / "k.yaml"))) as fh:
        kube = list(yaml.safe_load_all(fh))
    assert len(kube) == 2 and "kubernetes" in kube[1]["platforms"]
