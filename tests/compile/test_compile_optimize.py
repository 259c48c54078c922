"""The optimize pipeline compiles to YAML that names the image, defaults and the gate."""

import pytest
import yaml
from kfp import components

from tfopt import __version__
from tfopt.components._image import BASE_IMAGE
from tfopt.pipelines.compile import compile_pipeline


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("yaml") / "optimize.yaml")
    compile_pipeline("optimize", path)
    with open(path) as fh:
        return path, yaml.safe_load(fh)


def test_every_executor_runs_the_versioned_image_without_pip(compiled):
    _, spec = compiled
    executors = spec["deploymentSpec"]["executors"]
    assert executors
    for name, ex in executors.items():
        container = ex["container"]
        assert container["image"] == BASE_IMAGE, name
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
