"""The pipeline parameters as a person sees them: ``tfopt params``, docs/parameters.md and
the checks of a run on a cluster.

The descriptions are the compiled pipeline's (written once, where each setting is
declared; ``pipelines/parameters.py``), so ``tfopt params``, the docs table and the
console's run form say the same; the allowed values are read off the configs
(:func:`tfopt.client.preflight.describe_params`). A compiled pipeline's defaults are the
cluster's (``tfopt.pipelines.compile.CLUSTER_DEFAULTS``): :func:`check_cluster_params`
checks what a submitted run or a console run with those defaults gets.
"""

from __future__ import annotations

import re
from typing import Any

from tfopt.errors import ConfigError

START, END = "<!-- parameters:start -->", "<!-- parameters:end -->"
_TAG = re.compile(r"^\[([a-z]+)\] ")


def cluster_defaults(pipeline: str = "optimize") -> dict[str, Any]:
    """Parameter -> default of the compiled pipeline (a run on a cluster)."""
    from tfopt.client.pipeline_spec import pipeline_defaults
    from tfopt.pipelines.compile import CLUSTER_DEFAULTS

    return {**pipeline_defaults(pipeline), **CLUSTER_DEFAULTS.get(pipeline, {})}


def check_cluster_params(params: dict[str, Any], pipeline: str = "optimize") -> None:
    """``params`` (the others at the compiled defaults) as a run on a cluster gets them:
    every step's config (:func:`tfopt.client.preflight.check_pipeline_params`), and what
    only a cluster needs. Raises ``ConfigError`` naming the parameter to set."""
    from tfopt.client.preflight import check_pipeline_params

    p = {**cluster_defaults(pipeline), **params}
    check_pipeline_params(p, pipeline)
    if p.get("deploy_target") == "tf_serving" and not p.get("serving_base_path"):
        raise ConfigError(
            "deploy_target='tf_serving' needs serving_base_path on a cluster: the TF Serving "
            "model repository its servers read (gs://... or a mounted path); or set "
            "deploy_target='none' to select without deploying"
        )


def split_group(description: str) -> tuple[str, str]:
    """``"[data] Where ..."`` -> ``("data", "Where ...")``."""
    match = _TAG.match(description or "")
    if not match:
        return "", description or ""
    return match.group(1), description[match.end() :]


def parameter_rows(pipeline: str = "optimize") -> list[dict[str, Any]]:
    """Every parameter in the pipeline's order: name, group, type, default (a local run's),
    cluster_default (the compiled pipeline's), allowed, description (as compiled)."""
    from tfopt.client.pipeline_spec import pipeline_inputs
    from tfopt.client.preflight import describe_params

    specs = pipeline_inputs(pipeline)
    cluster = cluster_defaults(pipeline)
    rows = []
    for row in describe_params(pipeline):
        description = specs[row["name"]].description or ""
        group, _ = split_group(description)
        rows.append(
            {
                **row,
                "group": group,
                "cluster_default": cluster[row["name"]],
                "description": description,
            }
        )
    return rows


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def parameters_markdown(pipeline: str = "optimize") -> str:
    """docs/parameters.md's table: one section per group, in the pipeline's order."""
    import json

    out: list[str] = []
    group = None
    for r in parameter_rows(pipeline):
        if r["group"] != group:
            group = r["group"]
            out += ["", f"### {group or 'other'}", ""]
            out += ["| parameter | type | default | allowed | meaning |", "|---|---|---|---|---|"]
        default = json.dumps(r["default"])
        if r["cluster_default"] != r["default"]:
            default += f" (compiled: {json.dumps(r['cluster_default'])})"
        meaning = split_group(r["description"])[1]
        out.append(
            f"| `{r['name']}` | {r['type']} | `{_cell(default)}` | {_cell(r['allowed'])} "
            f"| {_cell(meaning)} |"
        )
    from tfopt.client import presets

    out += ["", "### presets (`preset: NAME` in a params file, or `--set preset=NAME`)", ""]
    out += ["| preset | sets | meaning |", "|---|---|---|"]
    for name, p in sorted(presets.PRESETS.items()):
        sets = ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in p.params.items())
        out.append(f"| `{name}` | {sets} | {_cell(p.description)} |")
    return "\n".join(out).strip()


def block(text: str) -> str:
    """The generated block of a document's ``text`` (between the markers)."""
    if START not in text or END not in text:
        raise ValueError(f"no {START} ... {END} block")
    return text.split(START, 1)[1].split(END, 1)[0].strip()
