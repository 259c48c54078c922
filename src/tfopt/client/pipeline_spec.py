"""The parameters of a tfopt pipeline as KFP sees them (read by params and pre-flight)."""

from __future__ import annotations

from typing import Any


def pipeline_inputs(pipeline: str = "optimize") -> dict:
    """Parameter name -> kfp InputSpec (type and default) of a tfopt pipeline."""
    from tfopt.pipelines.compile import pipeline_function

    return dict(pipeline_function(pipeline).component_spec.inputs or {})


def pipeline_defaults(pipeline: str = "optimize") -> dict[str, Any]:
    """Parameter name -> default of a tfopt pipeline."""
    return {name: spec.default for name, spec in pipeline_inputs(pipeline).items()}
