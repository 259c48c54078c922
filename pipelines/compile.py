"""Compile every tfopt pipeline to KFP YAML (``tfopt compile --output-dir DIR``), and every
component to a YAML of its own (``tfopt compile --components DIR``).

A compiled pipeline is what a console user sees: each parameter and each input of each
step carries its description (``inputDefinitions...description``; the inputs KFP itself
adds, those of condition groups and of the importer, are described here from what feeds
them), the parameters come in the pipeline's group order (data, training, compression,
selection, deploy) rather than KFP's alphabetical one, and the defaults are those that work
on a cluster (:data:`CLUSTER_DEFAULTS`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from tfopt import fsutil
from tfopt.pipelines import fanout_rules
from tfopt.pipelines.optimize import optimize

# Pipeline name (as users type it) -> @dsl.pipeline function.
PIPELINES: dict[str, Callable] = {
    "optimize": optimize,
}


def pipeline_function(name: str) -> Callable:
    from tfopt.errors import ConfigError

    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline {name!r}; pipelines: {', '.join(PIPELINES)}")
    return PIPELINES[name]


# Compile target -> file-name suffix: <name>.yaml for Kubeflow, <name>.vertex.yaml for Vertex.
TARGETS = {"kubeflow": "", "vertex": ".vertex"}


# Parameters whose default on a cluster differs from the function's (a local run's), so that
# pressing "Create run" in a console with the defaults gives a run that works there: a local
# run deploys to TF Serving in its output directory, a cluster has no such repository until
# one is named (serving_base_path), so the compiled pipelines select without deploying.
CLUSTER_DEFAULTS: dict[str, dict[str, Any]] = {
    "optimize": {"deploy_target": "none"},
}
# What the inputs of KFP's own importer mean (dsl.importer makes that component).
IMPORTER_INPUTS = {
    "uri": "URI of the artifact to import (here: the model the chosen training branch made).",
    "metadata": "Metadata recorded on the imported artifact.",
}


def compile_pipeline(
    name: str,
    package_path: str,
    target: str = "kubeflow",
    search_fanout: bool = False,
    search_parallelism: int = 0,
) -> str:
    """Compile one pipeline to ``package_path`` (YAML), written atomically.

    ``kubeflow`` keeps the kfp-kubernetes platform spec (node selectors,
    tolerations, timeouts, secrets) as the YAML's second document. ``vertex``
    writes the pipeline spec alone: Vertex AI Pipelines has no Kubernetes
    platform settings (its SDK reads one document), and takes the CPU, memory
    and accelerator settings that live in the pipeline spec itself.
    ``search_fanout``: each technique's search trials as parallel tasks, at most
    ``search_parallelism`` at a time (0 = no limit; ``pipelines/search_fanout.py``).
    """
    from tfopt.errors import ConfigError

    if target not in TARGETS:
        raise ConfigError(
            f"compile target {target!r} is not allowed: expected one of {', '.join(TARGETS)}"
        )
    fanout_rules.check(name, search_fanout, search_parallelism)
    if search_fanout:
        from tfopt.pipelines import search_fanout as fanout

        func = fanout.pipeline(name, search_parallelism)
    else:
        func = pipeline_function(name)
    text = _pipeline_yaml(func, CLUSTER_DEFAULTS.get(name, {}), platform=target == "kubeflow")
    with fsutil.atomic_file(package_path) as dst:
        dst.write(text)
    return package_path


def _pipeline_yaml(func, defaults: dict[str, Any], platform: bool) -> str:
    """What ``kfp.compiler.Compiler().compile`` writes (its header comment, its YAML dump),
    with ``defaults`` as the parameters' defaults, the inputs KFP adds described and the
    parameters in signature order."""
    import yaml
    from google.protobuf import json_format
    from kfp.compiler import pipeline_spec_builder as builder

    spec = builder.modify_pipeline_spec_with_override(func.pipeline_spec, None, defaults)  # a copy
    describe_added_inputs(spec)
    doc = json_format.MessageToDict(spec)
    header = builder.extract_comments_from_pipeline_spec(doc, func.description)
    doc = _sorted(doc)
    params = doc["root"]["inputDefinitions"]["parameters"]
    order = [n for n in (func.component_spec.inputs or {}) if n in params]
    doc["root"]["inputDefinitions"]["parameters"] = {n: params[n] for n in order}
    docs = [doc]
    if platform and len(func.platform_spec.platforms):
        docs.append(_sorted(json_format.MessageToDict(func.platform_spec)))
    return header + yaml.dump_all(docs, sort_keys=False)


def _sorted(obj):
    """``obj`` with every mapping's keys sorted (what ``yaml.dump(sort_keys=True)`` does)."""
    if isinstance(obj, dict):
        return {k: _sorted(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [_sorted(v) for v in obj]
    return obj


def describe_added_inputs(spec) -> None:
    """Describe, in a PipelineSpec, the inputs KFP adds: a condition group's
    ``pipelinechannel--*`` inputs take the text of what feeds them (the enclosing
    parameter or artifact, or the producing step's output), the importer's inputs
    :data:`IMPORTER_INPUTS`."""
    importers = {
        name.removeprefix("exec-")
        for name, ex in spec.deployment_spec.fields["executors"].struct_value.fields.items()
        if "importer" in ex.struct_value.fields
    }
    for comp_name, comp in spec.components.items():
        if comp_name.removeprefix("comp-") in importers:
            for name, definition in comp.input_definitions.parameters.items():
                definition.description = definition.description or IMPORTER_INPUTS.get(name, "")
    _describe_groups(spec, spec.root)


def _describe_groups(spec, parent) -> None:
    for task in parent.dag.tasks.values():
        child = spec.components[task.component_ref.name]
        if not child.dag.tasks:
            continue
        for name, value in task.inputs.parameters.items():
            target = child.input_definitions.parameters[name]
            if not target.description:
                target.description = _what_feeds(spec, parent, value, "parameter")
        for name, value in task.inputs.artifacts.items():
            target = child.input_definitions.artifacts[name]
            if not target.description:
                target.description = _what_feeds(spec, parent, value, "artifact")
        _describe_groups(spec, child)


def _what_feeds(spec, parent, value, kind: str) -> str:
    """The description of a task input's source: the parent's input, or a step's output."""
    if kind == "parameter" and value.component_input_parameter:
        return parent.input_definitions.parameters[value.component_input_parameter].description
    if kind == "artifact" and value.component_input_artifact:
        return parent.input_definitions.artifacts[value.component_input_artifact].description
    out = value.task_output_parameter if kind == "parameter" else value.task_output_artifact
    producer = out.producer_task
    key = out.output_parameter_key if kind == "parameter" else out.output_artifact_key
    if not producer:
        return ""
    ref = parent.dag.tasks[producer].component_ref.name
    outputs = spec.components[ref].output_definitions
    defs = outputs.parameters if kind == "parameter" else outputs.artifacts
    said = defs[key].description if key in defs else ""
    return said or f"The {key} output of the {producer} step."


def compile_targets(name: str, output_dir: str, **options) -> list[str]:
    """Compile one pipeline into ``output_dir/<name>.yaml`` (Kubeflow Pipelines) and
    ``output_dir/<name>.vertex.yaml`` (Vertex AI Pipelines); return the paths.
    ``options``: :func:`compile_pipeline`'s (the search fan-out)."""
    return [
        compile_pipeline(name, os.path.join(output_dir, f"{name}{suffix}.yaml"), target, **options)
        for target, suffix in TARGETS.items()
    ]


def compile_all(output_dir: str, **options) -> list[str]:
    """:func:`compile_targets` for every pipeline; return the paths."""
    fsutil.makedirs(output_dir)
    return [path for name in PIPELINES for path in compile_targets(name, output_dir, **options)]


def components() -> dict[str, Any]:
    """Every component of ``tfopt.components`` by file name (``deploy_tf_serving``), found
    in its modules: the written-out ones and the generated ones (``compress.COMPONENTS``)."""
    return {name: component for name, (component, _) in _found_components().items()}


def component_imports() -> dict[str, str]:
    """File name -> the Python that gets the component (docs/components.md)."""
    return {name: where for name, (_, where) in _found_components().items()}


def _found_components() -> dict[str, tuple[Any, str]]:
    import importlib
    import pkgutil

    from kfp.dsl import base_component

    from tfopt import components as package

    found: dict[str, tuple[Any, str]] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module_name = f"{package.__name__}.{info.name}"
        module = importlib.import_module(module_name)
        values = [(v, f"from {module_name} import {k}") for k, v in vars(module).items()]
        values += [
            (v, f'from {module_name} import COMPONENTS; COMPONENTS["{k}"]')
            for k, v in getattr(module, "COMPONENTS", {}).items()
        ]
        for value, where in values:
            if isinstance(value, base_component.BaseComponent):
                found.setdefault(value.component_spec.name.replace("-", "_"), (value, where))
    return dict(sorted(found.items()))


def compile_components(output_dir: str, names: tuple[str, ...] = ()) -> list[str]:
    """One ``<component>.yaml`` per component (``names``: only these) in ``output_dir``,
    each loadable with ``kfp.components.load_component_from_file``; return the paths."""
    import tempfile

    from kfp import compiler

    fsutil.makedirs(output_dir)
    paths = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, component in components().items():
            if names and name not in names:
                continue
            local = os.path.join(tmp, f"{name}.yaml")
            compiler.Compiler().compile(component, local)
            path = os.path.join(output_dir, f"{name}.yaml")
            with open(local) as src, fsutil.atomic_file(path) as dst:
                dst.write(src.read())
            paths.append(path)
    return paths
