"""Every parameter and every component input is described, from one place.

What a console user reads beside each field of the run form is the compiled YAML's
``description``: each pipeline parameter, each input of each step (condition groups and
the importer included) and each component of ``tfopt.components`` has one, and it is the
text written where the setting is declared: a library config's ``Attributes:`` entry,
the component's own ``Args:``, or for a pipeline parameter the input it feeds.
``tfopt params`` and docs/parameters.md say the same.
"""

from __future__ import annotations

import dataclasses
import os

import docstring_parser
import pytest
import yaml

from tfopt.client import parameter_docs
from tfopt.components import _describe
from tfopt.pipelines.compile import PIPELINES, compile_all, components
from tfopt.pipelines.parameters import fed_descriptions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GROUP_ORDER = ["data", "training", "compression", "selection", "deploy"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, dict]:
    paths = compile_all(str(tmp_path_factory.mktemp("compiled")))
    out = {}
    for path in paths:
        with open(path) as fh:
            out[os.path.basename(path)] = next(yaml.safe_load_all(fh))
    return out


def _undescribed(doc: dict) -> list[str]:
    missing = [
        f"parameter {name}"
        for name, d in doc["root"]["inputDefinitions"]["parameters"].items()
        if not d.get("description")
    ]
    for comp_name, comp in doc["components"].items():
        for kind in ("parameters", "artifacts"):
            for name, d in comp.get("inputDefinitions", {}).get(kind, {}).items():
                if not d.get("description"):
                    missing.append(f"{comp_name}.{name}")
    return missing


def test_no_parameter_and_no_step_input_of_a_compiled_pipeline_is_undescribed(compiled):
    assert len(compiled) == 2 * len(PIPELINES)  # the Kubeflow and the Vertex flavour
    for name, doc in compiled.items():
        assert _undescribed(doc) == [], name
        assert len(doc["root"]["inputDefinitions"]["parameters"]) > 80, name


def test_every_component_has_a_one_line_description_and_describes_every_input():
    found = components()
    assert {"ingest", "train", "evaluate", "select", "prune", "deploy_tf_serving"} <= set(found)
    missing = []
    for name, comp in found.items():
        spec = comp.component_spec
        summary = (spec.description or "").splitlines()[0] if spec.description else ""
        if not summary.strip():
            missing.append(f"{name}: no description")
        missing += [f"{name}.{i}" for i, s in (spec.inputs or {}).items() if not s.description]
    assert missing == []


def test_yaml_and_tfopt_params_agree(compiled):
    doc = compiled["optimize.yaml"]
    declared = doc["root"]["inputDefinitions"]["parameters"]
    rows = parameter_docs.parameter_rows("optimize")
    assert [r["name"] for r in rows] == list(declared)  # the same parameters, in one order
    for r in rows:
        d = declared[r["name"]]
        assert r["description"] == d["description"], r["name"]
        assert r["group"] in GROUP_ORDER, r["name"]
        default = d.get("defaultValue")
        if r["type"] == "Integer":
            default = int(default)
        assert r["cluster_default"] == default, r["name"]


def test_the_console_groups_stand_together_in_order(compiled):
    for name, doc in compiled.items():
        groups = [
            parameter_docs.split_group(d["description"])[0]
            for d in doc["root"]["inputDefinitions"]["parameters"].values()
        ]
        blocks = [g for i, g in enumerate(groups) if i == 0 or g != groups[i - 1]]
        assert blocks == GROUP_ORDER, name  # each group once, in the pipeline's order


def test_a_parameter_says_what_the_input_it_feeds_says():
    """Written once: a parameter the pipeline does not describe itself has the text of the
    step input it feeds (and feeds no input that says something else)."""
    from tfopt.pipelines.compile import pipeline_function

    for pipeline in PIPELINES:
        func = pipeline_function(pipeline)
        own = {p.arg_name for p in docstring_parser.parse(func.pipeline_func.__doc__).params}
        checked = 0
        for name, spec in func.component_spec.inputs.items():
            if name in own:
                continue
            fed = set(fed_descriptions(func.pipeline_spec, "root", name).values())
            text = parameter_docs.split_group(spec.description)[1]
            assert fed == {text}, f"{pipeline}.{name}: {text!r} but it feeds {fed}"
            checked += 1
        assert checked > 40


# component -> the library configs whose same-named fields its inputs take their text from
CONFIGS = {
    "ingest": ("tfopt.data.ingest", "IngestConfig"),
    "tune": ("tfopt.training.tune", "TuneConfig"),
    "train_config": ("tfopt.training.model_config", "ModelConfig"),
    "infra_validate": ("tfopt.deploy.serving.infravalidate", "InfraValidationConfig"),
    "deploy_vertex": ("tfopt.deploy.vertex_config", "DeployConfig"),
    "import_model": ("tfopt.training.imported", "ImportConfig"),
    "plan_training": ("tfopt.launch.validate", "TrainingRequest"),
}


def test_component_inputs_take_their_library_configs_words():
    import importlib

    found, checked = components(), 0
    for name, (module, cls_name) in CONFIGS.items():
        cls = getattr(importlib.import_module(module), cls_name)
        docs = _describe.config_docs(cls)
        func = found[name].python_func
        own = {p.arg_name for p in docstring_parser.parse(func.__doc__).params}
        written = {p.arg_name for p in docstring_parser.parse(_source_docstring(func)).params}
        for field in dataclasses.fields(cls):
            spec = found[name].component_spec.inputs.get(field.name)
            if spec is None or field.name in written or field.name not in own:
                continue
            assert spec.description == docs[field.name], f"{name}.{field.name}"
            checked += 1
    assert checked > 25


def _source_docstring(func) -> str:
    """The docstring as written in the source (before ``_describe.inputs`` completed it)."""
    import ast
    import inspect
    import textwrap

    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    return ast.get_docstring(tree.body[0]) or ""


def test_every_choice_is_named_where_a_parameter_is_described():
    missing = []
    for r in parameter_docs.parameter_rows("optimize"):
        if not r["allowed"].startswith("one of "):
            continue
        choices = [c.strip().strip("'") for c in r["allowed"][len("one of ") :].split(",")]
        missing += [f"{r['name']}: {c}" for c in choices if c not in r["description"]]
    assert missing == []


def test_docs_parameters_table_is_the_generated_one():
    with open(os.path.join(ROOT, "docs", "parameters.md")) as fh:
        text = fh.read()
    assert parameter_docs.block(text) == parameter_docs.parameters_markdown("optimize"), (
        "docs/parameters.md is stale: paste `tfopt params --markdown` between its markers"
    )
