"""Pipeline parameters from one YAML/JSON file, shared by run, submit and schedule.

Keys are pipeline parameter names. The reserved top-level sections
``submit`` and ``schedule`` hold target settings and are read by
:mod:`tfopt.client.submit`; ``runner`` (``subprocess`` or ``docker``) says how
``tfopt run`` runs the steps; ``preset`` names a parameter set
(:mod:`tfopt.client.presets`) under the file's own values; everything else must be a
parameter of the pipeline, with a value of the parameter's type.
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml

from tfopt.client import presets
from tfopt.client.pipeline_spec import pipeline_inputs
from tfopt.errors import ConfigError

RESERVED_SECTIONS = ("submit", "schedule", "runner")
RUNNERS = ("subprocess", "docker")  # kfp.local's SubprocessRunner (default), DockerRunner
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
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not a text params file (byte {exc.start} is not UTF-8); expected YAML or JSON"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text params file (it holds NUL bytes)")
    try:
        if path.endswith(".json"):
            raw = json.loads(text, object_pairs_hook=_unique_pairs)
        else:
            raw = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except Exception as exc:  # json.JSONDecodeError or yaml.YAMLError
        raise ConfigError(f"{path}: cannot parse ({type(exc).__name__}: {exc})") from None
    if raw is None:
        raise ConfigError(
            f"{path}: the params file is empty; give at least one parameter, "
            "or leave out --params to run with the defaults"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of parameter names to values")
    return raw


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """JSON ``object_pairs_hook`` failing on a key given twice (json keeps the last)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"parameter {key!r} is given twice")
        out[key] = value
    return out


class _UniqueKeyLoader(yaml.SafeLoader):
    """A ``SafeLoader`` failing on a mapping key given twice (PyYAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(
                    f"line {key_node.start_mark.line + 1}: parameter {key!r} is given twice"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def validate_params(
    values: dict[str, Any], pipeline: str = "optimize", where: str = "params"
) -> dict[str, Any]:
    """Check names and types against the pipeline's signature; return the parameters
    (a ``preset`` expanded under the values given)."""
    values = presets.expand(values, where)
    specs = pipeline_inputs(pipeline)
    bad = [k for k in values if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}: parameter names must be strings, got {bad!r}")
    if "runner" in values:
        check_runner(values["runner"], where)
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
            params[name] = float(value)  # type: ignore[arg-type]  # an int or float, checked above
    return params


def check_runner(value: Any, where: str = "params") -> str:
    """``value`` if it names a local runner, else a ConfigError saying which are allowed."""
    if value not in RUNNERS:
        raise ConfigError(f"{where}: runner={value!r}; allowed: {', '.join(RUNNERS)}")
    return value


def load_params(
    path: str | None,
    pipeline: str = "optimize",
    overrides: dict[str, Any] | None = None,
    local: bool = False,
) -> dict[str, Any]:
    """Parameters from ``path`` (may be None) updated by ``overrides``, validated.

    Names and types are checked here, then every value with the steps' own
    config classes (:func:`tfopt.client.preflight.check_pipeline_params`;
    ``local``: the run is on this machine, so its source is checked as well).
    """
    from tfopt.client.preflight import check_pipeline_params

    values = read_params_file(path) if path else {}
    values.update(overrides or {})
    params = validate_params(values, pipeline, where=path or "params")
    check_pipeline_params(params, pipeline, local=local)
    return params
