"""Pressing "Create run" with the defaults gives a run that works on that backend.

Each compiled flavour's defaults (the Kubeflow and the Vertex YAML) pass every step's
config and what only a cluster needs (``parameter_docs.check_cluster_params``); the
function's own defaults, which a local run uses, would deploy to a TF Serving repository
that a cluster does not have, and are refused there naming the parameter to set.
"""

from __future__ import annotations

import os

import pytest
import yaml

from tfopt.client import parameter_docs, user_files
from tfopt.client.pipeline_spec import pipeline_defaults
from tfopt.errors import ConfigError
from tfopt.pipelines.compile import PIPELINES, compile_all

_TYPES = {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict[str, dict]:
    out = {}
    for path in compile_all(str(tmp_path_factory.mktemp("compiled"))):
        with open(path) as fh:
            out[os.path.basename(path)] = next(yaml.safe_load_all(fh))
    return out


def _defaults(doc: dict) -> dict:
    declared = doc["root"]["inputDefinitions"]["parameters"]
    return {
        name: _TYPES.get(d["parameterType"], lambda v: v)(d["defaultValue"])
        for name, d in declared.items()
    }


def test_every_compiled_flavour_runs_with_its_defaults(compiled):
    assert sorted(compiled) == sorted(
        f"{p}{suffix}.yaml" for p in PIPELINES for suffix in ("", ".vertex")
    )
    for name, doc in compiled.items():
        defaults = _defaults(doc)
        parameter_docs.check_cluster_params(defaults)  # raises naming the parameter to set
        user_files.require_remote(defaults)  # nothing a cluster cannot read
        assert defaults["deploy_target"] == "none", name  # selects; deploys nowhere unnamed


def test_the_local_runs_defaults_are_refused_on_a_cluster_naming_what_to_set():
    local = pipeline_defaults("optimize")
    assert local["deploy_target"] == "tf_serving" and local["serving_base_path"] == ""
    with pytest.raises(ConfigError, match="needs serving_base_path on a cluster"):
        parameter_docs.check_cluster_params({"deploy_target": "tf_serving"})
    parameter_docs.check_cluster_params(
        {"deploy_target": "tf_serving", "serving_base_path": "gs://bucket/models"}
    )
    with pytest.raises(ConfigError, match="needs project and region"):
        parameter_docs.check_cluster_params({"deploy_target": "vertex"})
