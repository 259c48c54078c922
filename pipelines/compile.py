"""Compile every tfopt pipeline to KFP YAML (``tfopt compile --output-dir DIR``)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

from kfp import compiler

from tfopt import fsutil
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


def compile_pipeline(name: str, package_path: str, target: str = "kubeflow") -> str:
    """Compile one pipeline to ``package_path`` (YAML), written atomically.

    ``kubeflow`` keeps the kfp-kubernetes platform spec (node selectors,
    tolerations, timeouts, secrets) as the YAML's second document. ``vertex``
    writes the pipeline spec alone: Vertex AI Pipelines has no Kubernetes
    platform settings (its SDK reads one document), and takes the CPU, memory
    and accelerator settings that live in the pipeline spec itself.
    """
    from tfopt.errors import ConfigError

    if target not in TARGETS:
        raise ConfigError(
            f"compile target {target!r} is not allowed: expected one of {', '.join(TARGETS)}"
        )
    func = pipeline_function(name)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "pipeline.yaml")
        compiler.Compiler().compile(func, local)
        with open(local) as src:
            text = src.read()
    if target == "vertex":
        text = text.split("\n---\n", 1)[0] + "\n"
    with fsutil.atomic_file(package_path) as dst:
        dst.write(text)
    return package_path


def compile_targets(name: str, output_dir: str) -> list[str]:
    """Compile one pipeline into ``output_dir/<name>.yaml`` (Kubeflow Pipelines) and
    ``output_dir/<name>.vertex.yaml`` (Vertex AI Pipelines); return the paths."""
    return [
        compile_pipeline(name, os.path.join(output_dir, f"{name}{suffix}.yaml"), target)
        for target, suffix in TARGETS.items()
    ]


def compile_all(output_dir: str) -> list[str]:
    """:func:`compile_targets` for every pipeline; return the paths."""
    fsutil.makedirs(output_dir)
    return [path for name in PIPELINES for path in compile_targets(name, output_dir)]
