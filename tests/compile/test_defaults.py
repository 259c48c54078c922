"""Each default is written once: a pipeline parameter, the component input it feeds and the
library config field behind that input never disagree.

Compression settings are generated from their configs (components/compress.py,
pipelines/parameters.py), so they agree by construction; this test covers every input of
every step, generated or written out, in the compiled pipeline and its sub-pipelines.
"""

import dataclasses

import pytest
import yaml

from tfopt.client.pipeline_spec import pipeline_defaults
from tfopt.deploy import vertex
from tfopt.deploy.serving import deploy, infravalidate
from tfopt.evaluation import evaluate, select
from tfopt.pipelines.compile import CLUSTER_DEFAULTS, compile_pipeline
from tfopt.training import imported, train, tune
from tfopt.training import models as models_lib

# component -> the library configs whose same-named fields its inputs feed
CONFIGS = {
    "ingest": ("tfopt.data.ingest", "IngestConfig"),
    "validate-data": ("tfopt.data.drift", "DriftConfig"),
    "evaluate": evaluate.EvalConfig,
    "select": select.SelectionPolicy,
    "deploy-tf-serving": deploy.DeployConfig,
    "infra-validate": infravalidate.InfraValidationConfig,
    "deploy-vertex": vertex.DeployConfig,
    "tune": tune.TuneConfig,
    "train-config": (models_lib.ModelConfig, train.TrainConfig),
    "import-model": imported.ImportConfig,
}
# (component, input): why its default differs from the pipeline's, on purpose (``enabled``
# is a step's switch: True in the component, the registry's default in the pipeline)
DIFFERENT_ON_PURPOSE = {
    ("select", "deploy_target"): "the library selects for no server; the pipeline deploys",
    ("select", "pipeline_name"): "the pipeline passes its own name",
}


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("yaml") / "optimize.yaml")
    compile_pipeline("optimize", path)
    with open(path) as fh:
        doc = next(yaml.safe_load_all(fh))
    # the defaults as written; the compiled ones of CLUSTER_DEFAULTS differ on purpose (a
    # cluster has no TF Serving repository until one is named; test_console_defaults.py)
    top = doc["root"]["inputDefinitions"]["parameters"]
    for name, value in pipeline_defaults("optimize").items():
        if name in CLUSTER_DEFAULTS["optimize"]:
            top[name]["defaultValue"] = value
    return doc


def _default(definition: dict):
    return definition.get("defaultValue", dataclasses.MISSING)


def _configs(entry) -> tuple:
    import importlib

    if isinstance(entry, tuple) and isinstance(entry[0], str):
        return (getattr(importlib.import_module(entry[0]), entry[1]),)
    return entry if isinstance(entry, tuple) else (entry,)


def test_a_pipeline_parameter_and_the_component_input_it_feeds_share_their_default(spec):
    top = spec["root"]["inputDefinitions"]["parameters"]
    checked, wrong = 0, []
    for comp_name, comp in [("root", spec["root"]), *spec["components"].items()]:
        outer = (
            comp.get("inputDefinitions", {}).get("parameters", {}) if comp_name != "root" else top
        )
        for task in comp.get("dag", {}).get("tasks", {}).values():
            inputs = spec["components"][task["componentRef"]["name"]].get("inputDefinitions", {})
            declared = inputs.get("parameters", {})
            for name, value in task.get("inputs", {}).get("parameters", {}).items():
                source = value.get("componentInputParameter")
                if source not in outer or name not in declared or name == "enabled":
                    continue
                mine, theirs = _default(declared[name]), _default(outer[source])
                if mine is dataclasses.MISSING or theirs is dataclasses.MISSING:
                    continue
                checked += 1
                step = task["taskInfo"]["name"]
                if mine != theirs and (step, name) not in DIFFERENT_ON_PURPOSE:
                    wrong.append(f"{step}.{name}={mine!r} but {comp_name}.{source}={theirs!r}")
    assert not wrong, wrong
    assert checked > 60  # every step's wired inputs were compared


def test_a_component_input_and_its_library_config_field_share_their_default(spec):
    checked, wrong = 0, []
    tasks = spec["root"]["dag"]["tasks"]
    by_step = {t["taskInfo"]["name"]: t for t in tasks.values()}
    for comp in spec["components"].values():
        by_step.update(
            {t["taskInfo"]["name"]: t for t in comp.get("dag", {}).get("tasks", {}).values()}
        )
    for step, entry in CONFIGS.items():
        task = by_step[step]
        declared = spec["components"][task["componentRef"]["name"]]["inputDefinitions"]
        for cls in _configs(entry):
            fields = {f.name: f for f in dataclasses.fields(cls)}
            for name, definition in declared.get("parameters", {}).items():
                field = fields.get("previous" if name == "previous_summary" else name)
                if field is None or field.default is dataclasses.MISSING:
                    continue
                mine = _default(definition)
                if mine is dataclasses.MISSING:
                    continue
                checked += 1
                theirs = field.default
                if isinstance(theirs, tuple):
                    theirs = ",".join(theirs)
                if mine != theirs and (mine or None) != (theirs or None):
                    wrong.append(
                        f"{step}.{name}={mine!r} but {cls.__name__}.{field.name}={theirs!r}"
                    )
    assert not wrong, wrong
    assert checked > 40
