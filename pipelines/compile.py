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


def compile_pipeline(name: str, package_path: str) -> str:
    """Compile one pipeline to ``package_path`` (YAML), written atomically."""
    func = pipeline_function(name)
    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, "pipeline.yaml")
        compiler.Compiler().compile(func, local)
        with open(local) as src, fsutil.atomic_file(package_path) as dst:
            dst.write(src.read())
    return package_path


def compile_all(output_dir: str) -> list[str]:
    """Compile every pipeline into ``output_dir/<name>.yaml``; return the paths."""
    fsutil.makedirs(output_dir)
    return [compile_pipeline(name, os.path.join(output_dir, f"{name}.yaml"))
            for name in PIPELINES]
