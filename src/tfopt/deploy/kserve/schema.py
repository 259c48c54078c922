"""Check an InferenceService against KServe's CRD schema before any request is sent.

The schema (``inferenceservice_v1beta1.schema.json`` beside this module) is the subset of
KServe's published ``serving.kserve.io_inferenceservices.yaml`` that tfopt writes, with
the KServe version it was taken from in ``x-tfopt-source``. The API server prunes (or,
with strict field validation, rejects) a field a structural schema does not list; here
any such field is an error, so a typo or a field of another KServe version fails before
the cluster is asked.
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import Any

from tfopt.errors import ConfigError

SCHEMA_FILE = os.path.join(os.path.dirname(__file__), "inferenceservice_v1beta1.schema.json")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


@functools.lru_cache(maxsize=1)
def schema() -> dict:
    with open(SCHEMA_FILE) as fh:
        return json.load(fh)


def source() -> dict:
    """Where the schema comes from: ``{"project": "KServe", "version": "v0.20.0", ...}``."""
    return dict(schema()["x-tfopt-source"])


def errors(doc: Any, node: dict | None = None, path: str = "") -> list[str]:
    """Every way ``doc`` breaks the schema, as ``path: problem`` lines (empty: valid)."""
    node = schema() if node is None else node
    out: list[str] = []
    where = path or "."
    if "anyOf" in node:  # int-or-string quantities: one alternative (with the rest) passes
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if all(errors(doc, {**rest, **alt}, path) for alt in node["anyOf"]):
            return [f"{where}: {doc!r} is none of {[a['type'] for a in node['anyOf']]}"]
        return []
    kind = node.get("type")
    if kind and not _is(doc, kind):
        return [f"{where}: expected {kind}, got {type(doc).__name__} {doc!r}"]
    if "enum" in node and doc not in node["enum"]:
        out.append(f"{where}: {doc!r} is not one of {node['enum']}")
    if "pattern" in node and isinstance(doc, str) and not re.search(node["pattern"], doc):
        out.append(f"{where}: {doc!r} does not match {node['pattern']}")
    if kind == "integer":
        low, high = _INT_RANGES.get(node.get("format", ""), (None, None))
        low, high = node.get("minimum", low), node.get("maximum", high)
        if (low is not None and doc < low) or (high is not None and doc > high):
            out.append(f"{where}: {doc} is outside [{low}, {high}]")
    if isinstance(doc, dict):
        out += _object_errors(doc, node, path)
    if isinstance(doc, list) and "items" in node:
        for i, item in enumerate(doc):
            out += errors(item, node["items"], f"{path}[{i}]")
    return out


def _object_errors(doc: dict, node: dict, path: str) -> list[str]:
    out = [f"{path}.{k}: required field missing" for k in node.get("required", ()) if k not in doc]
    props = node.get("properties")
    for key, value in doc.items():
        if props is not None and key in props:
            out += errors(value, props[key], f"{path}.{key}")
        elif "additionalProperties" in node:
            out += errors(value, node["additionalProperties"], f"{path}.{key}")
        elif props is not None and not node.get("x-kubernetes-preserve-unknown-fields"):
            out.append(f"{path}.{key}: unknown field (the CRD has {', '.join(sorted(props))})")
    return out


def _is(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, {"object": dict, "array": list, "string": str, "boolean": bool}[kind])


def validate(manifest: dict) -> dict:
    """``manifest`` if KServe's CRD schema accepts it; ConfigError naming every problem."""
    problems = errors(manifest)
    if problems:
        src = source()
        raise ConfigError(
            f"InferenceService manifest does not match KServe {src['version']}'s "
            f"{src['group']}/{src['apiVersion']} CRD schema: " + "; ".join(problems[:10])
        )
    return manifest
