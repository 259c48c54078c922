"""Pipeline parameters from one YAML/JSON file, shared by run, submit and schedule.

Keys are pipeline parameter names. The reserved top-level sections
``submit`` and ``schedule`` hold target settings and are read by
:mod:`tfopt.client.submit`; everything else must be a parameter of the pipeline,
with a value of the parameter's type.
"""

from __future__ import annotations

import json
import os
from typing import Any

from tfopt.errors import ConfigError

RESERVED_SECTIONS = ("submit", "schedule")
_TYPES = {
    "String": (str,),
    "Integer": (int,),
    "Float": (float, int),
    "Boolean": (bool,),
    "Dict": (dict,),
    "List": (list,),
}


def read_params_file(path: str) -> dict[str, Any]:
    """Parse a YAML or JSON mapping; errors name the file."""
    if not os.path.isfile(path):
        raise ConfigError(f"{path}: params file not found")
    with open(path) as fh:
        text = fh.read()
    try:
        if path.endswith(".json"):
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError or yaml.YAMLError
        raise ConfigError(f"{path}: cannot parse ({type(exc).__name__}: {exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of parameter names to values")
    return raw


def pipeline_inputs(pipeline: str = "optimize") -> dict:
    """Parameter name -> kfp InputSpec (type and default) of a tfopt pipeline."""
    from tfopt.pipelines.compile import pipeline_function

    return dict(pipeline_function(pipeline).component_spec.inputs or {})


def validate_params(
    values: dict[str, Any], pipeline: str = "optimize", where: str = "params"
) -> dict[str, Any]:
    """Check names and types against the pipeline's signature; return the parameters."""
    specs = pipeline_inputs(pipeline)
    bad = [k for k in values if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}: parameter names must be strings, got {bad!r}")
    params = {k: v for k, v in values.items() if k not in RESERVED_SECTIONS}
    unknown = sorted(set(params) - set(specs))
    if unknown:
        raise ConfigError(
            f"{where}: unknown parameter(s) {', '.join(unknown)} for pipeline "
            f"{pipeline!r}; allowed: {', '.join(sorted(specs))}"
        )
    for name, value in params.items():
        allowed = _TYPES.get(specs[name].type)
        if allowed is None:
            continue
        is_bool = isinstance(value, bool)
        if not isinstance(value, allowed) or (is_bool and bool not in allowed):
            raise ConfigError(
                f"{where}: parameter {name}={value!r} has type "
                f"{type(value).__name__}; expected {specs[name].type}"
            )
        if specs[name].type == "Float":
            params[name] = float(value)
    return params


def load_params(
    path: str | None, pipeline: str = "optimize", overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Parameters from ``path`` (may be None) updated by ``overrides``, validated."""
    values = read_params_file(path) if path else {}
    values.update(overrides or {})
    return validate_params(values, pipeline, where=path or "params")
