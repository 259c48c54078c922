"""The components' signatures and the compiled optimize pipeline agree with the technique
registry (``tfopt.registry``) and pass the training settings as one mapping."""

import re

import pytest
import yaml

from tfopt import registry
from tfopt.components import _util
from tfopt.components.compress import COMPONENTS
from tfopt.components.evaluate import evaluate
from tfopt.components.select import select
from tfopt.components.train_config import train_config
from tfopt.pipelines.compile import compile_pipeline

MODEL = "system.Model@0.0.1"


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("yaml") / "optimize.yaml")
    compile_pipeline("optimize", path)
    with open(path) as fh:
        return next(yaml.safe_load_all(fh))  # 2nd document: platform spec


def root_tasks(spec) -> dict:
    return spec["root"]["dag"]["tasks"]


def by_display_name(spec) -> dict:
    return {t["taskInfo"]["name"]: (name, t) for name, t in root_tasks(spec).items()}


def model_inputs(component) -> dict:
    return {n: s for n, s in component.component_spec.inputs.items() if s.type == MODEL}


@pytest.mark.parametrize(
    ("component", "baseline_input"), [(evaluate, "baseline"), (select, "baseline_model")]
)
def test_candidate_inputs_of_evaluate_and_select_are_the_registry(component, baseline_input):
    inputs = model_inputs(component)
    names = registry.names()
    assert set(inputs) == {baseline_input, *names}
    assert all(inputs[name].optional for name in names)
    # evaluation order (summary.json's) is the registry's
    assert [n for n in component.component_spec.inputs if n in names] == list(names)


def test_every_variant_is_made_by_its_technique_from_its_base_under_its_switch(spec):
    tasks, named = root_tasks(spec), by_display_name(spec)
    producer = {registry.BASELINE: ("train-step", "Output")}
    for v in registry.variants():
        assert v.task in named, f"{v.name}: no step named {v.task!r}"
        task_name, task = named[v.task]
        ref = task["componentRef"]["name"]  # comp-tflite, comp-tflite-2, ...
        comp = v.technique.replace("_", "-")
        assert re.fullmatch(rf"comp-{comp}(-\d+)?", ref), (v.name, ref)
        model = task["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
        assert (model["producerTask"], model["outputArtifactKey"]) == producer[v.base], v.name
        enabled = task["inputs"]["parameters"]["enabled"]
        if v.switch:
            assert enabled == {"componentInputParameter": v.switch}, v.name
        else:  # follows its base: a skipped base skips it
            assert enabled == {"runtimeValue": {"constant": True}}, v.name
        parameters = task["inputs"]["parameters"]
        for key, value in v.settings.items():  # the mode, recipe ... the variant fixes
            assert parameters[key]["runtimeValue"]["constant"] == value, (v.name, key)
        for setting in registry.get_technique(v.technique).settings:
            if setting.param and setting.name not in v.settings:  # fed by its pipeline parameter
                assert parameters[setting.name] == {"componentInputParameter": setting.param}
        producer[v.name] = (task_name, "compressed_model")
    # evaluate and select receive each variant from the step that makes it
    for step, baseline_input in (("evaluate", "baseline"), ("select", "baseline_model")):
        artifacts = tasks[step]["inputs"]["artifacts"]
        wired = {
            name: (
                a["taskOutputArtifact"]["producerTask"],
                a["taskOutputArtifact"]["outputArtifactKey"],
            )
            for name, a in artifacts.items()
            if name in registry.names() or name == baseline_input
        }
        assert wired == {
            **{n: producer[n] for n in registry.names()},
            baseline_input: producer["baseline"],
        }


def test_every_enable_switch_of_the_pipeline_is_a_variants(spec):
    params = spec["root"]["inputDefinitions"]["parameters"]
    switches = {name for name in params if name.startswith("enable_")} - {"enable_tuning"}
    assert switches == set(registry.switches())
    for name, default in registry.switches().items():
        assert params[name]["parameterType"] == "BOOLEAN"
        assert params[name]["defaultValue"] is default, name


def test_each_technique_has_one_generated_component_with_its_settings_as_inputs():
    for t in registry.techniques():
        spec = COMPONENTS[t.name].component_spec
        assert spec.name == t.name.replace("_", "-")  # KFP names components kebab-case
        for s in t.settings:
            assert spec.inputs[s.name].default == s.default, (t.name, s.name)
            assert spec.inputs[s.name].description.startswith(s.description), (t.name, s.name)
        assert "compressed_model" in spec.outputs
        assert ("tensorboard" in spec.outputs) == t.trains


def test_training_settings_stay_flat_at_the_top_and_travel_as_one_mapping(spec):
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert set(_util.TRAIN_SETTINGS) <= set(params)
    assert list(train_config.component_spec.inputs) == list(_util.TRAIN_SETTINGS)
    made = root_tasks(spec)["train-config"]
    assert made["inputs"]["parameters"] == {
        n: {"componentInputParameter": n} for n in _util.TRAIN_SETTINGS
    }
    assert not made["cachingOptions"].get("enableCache")  # cheap; never a cache hit to report
    step = root_tasks(spec)["train-step"]["inputs"]["parameters"]
    assert step["train_config"] == {
        "taskOutputParameter": {"outputParameterKey": "Output", "producerTask": "train-config"}
    }
    assert not set(_util.TRAIN_SETTINGS) & set(step)
    # every train component (each one that takes the tuned hyperparameters) takes the
    # mapping as it is and no flat copy of the settings
    trainers = 0
    for comp in spec["components"].values():
        for task in comp.get("dag", {}).get("tasks", {}).values():
            if "hyperparameters" not in task.get("inputs", {}).get("artifacts", {}):
                continue
            if "dag" in spec["components"][task["componentRef"]["name"]]:
                continue  # the train_step sub-pipeline itself
            trainers += 1
            parameters = task["inputs"].get("parameters", {})
            assert "pipelinechannel--train_config" in str(parameters["train_config"])
            assert not set(_util.TRAIN_SETTINGS) & set(parameters)
            declared = spec["components"][task["componentRef"]["name"]]["inputDefinitions"]
            assert declared["parameters"]["train_config"]["parameterType"] == "STRUCT"
    assert trainers >= 3  # in-cluster, TFJob, Vertex (and any new target)
