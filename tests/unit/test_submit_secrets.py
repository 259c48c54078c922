"""Secrets reach steps as Kubernetes secret references, never as values in the YAML."""

import pytest
import yaml
from kfp import compiler, dsl

from tfopt.components._secrets import use_secrets
from tfopt.errors import ConfigError


@dsl.component(base_image="python:3.11")
def _needs_token() -> str:
    import os

    return "set" if os.environ.get("SERVING_TOKEN") else "missing"


@dsl.pipeline(name="secret-check")
def _pipeline():
    use_secrets(_needs_token(), {"tfopt-serving": {"token": "SERVING_TOKEN"}})


def test_secret_is_referenced_by_name_in_the_platform_spec(tmp_path):
    path = tmp_path / "p.yaml"
    compiler.Compiler().compile(_pipeline, str(path))
    docs = list(yaml.safe_load_all(path.read_text()))
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    (spec,) = platform.values()
    (entry,) = spec["secretAsEnv"]
    assert entry["secretName"] == "tfopt-serving"
    assert entry["keyToEnv"] == [{"secretKey": "token", "envVar": "SERVING_TOKEN"}]
    # The executor's own container spec carries no env values.
    (executor,) = docs[0]["deploymentSpec"]["executors"].values()
    assert "env" not in executor["container"]


@pytest.mark.parametrize(
    ("secrets", "match"),
    [
        ({}, "expected"),
        ({"Bad_Name": {"token": "TOKEN"}}, "not a Kubernetes name"),
        ({"tfopt": {"token": "lower_case"}}, "UPPER_CASE"),
        ({"tfopt": {"bad key!": "TOKEN"}}, "key"),
    ],
)
def test_malformed_secret_references_are_refused(secrets, match):
    def bad():
        use_secrets(_needs_token(), secrets)

    with pytest.raises(ConfigError, match=match):
        dsl.pipeline(name="bad")(bad)  # KFP runs the pipeline body when it is decorated
