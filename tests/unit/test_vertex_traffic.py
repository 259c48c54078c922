"""Traffic-split arithmetic and deploy settings validated before any Vertex AI call."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tfopt.deploy import vertex
from tfopt.errors import ConfigError


def test_validate_traffic_split():
    assert vertex.validate_traffic_split({"1": 70, "2": 30}, ["1", "2"]) == {"1": 70, "2": 30}
    assert vertex.validate_traffic_split({}, []) == {}
    with pytest.raises(ConfigError, match="sums to 90"):
        vertex.validate_traffic_split({"1": 60, "2": 30}, ["1", "2"])
    with pytest.raises(ConfigError, match="'3' is not deployed"):
        vertex.validate_traffic_split({"1": 50, "3": 50}, ["1", "2"])
    with pytest.raises(ConfigError, match="integer percent"):
        vertex.validate_traffic_split({"1": 50.5, "2": 49.5}, ["1", "2"])
    with pytest.raises(ConfigError, match="sums to 0"):
        vertex.validate_traffic_split({}, ["1"])  # models deployed but no traffic


def test_canary_split_keeps_proportions():
    assert vertex.canary_split({}, 10) == {"0": 100}  # first model: nothing to compare
    assert vertex.canary_split({"a": 100}, 10) == {"a": 90, "0": 10}
    assert vertex.canary_split({"a": 50, "b": 50}, 25) == {"a": 38, "b": 37, "0": 25}
    assert vertex.canary_split({"a": 100, "b": 0}, 100) == {"0": 100}


@given(
    st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 100), min_size=1), st.integers(1, 99)
)
def test_canary_split_always_valid(weights, pct):
    total = sum(weights.values())
    if total == 0:
        return
    # Normalise to a valid current split first.
    current = vertex.canary_split(weights, 1)
    current.pop("0")
    current = dict(current.items())
    if not current or sum(current.values()) != 99:
        return
    current[max(current, key=current.get)] += 1
    split = vertex.canary_split(current, pct)
    assert vertex.validate_traffic_split(split, [*current, "0"]) == split
    assert split["0"] == pct


def test_smoke_requests_reach_the_canary_with_high_probability():
    assert vertex.smoke_requests_needed(100) == 1
    n = vertex.smoke_requests_needed(10)
    assert 0.9**n <= 1e-3 < 0.9 ** (n - 1)
    assert vertex.smoke_requests_needed(1) == 688


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"canary_percent": 0}, "canary_percent"),
        ({"accelerator_type": "NVIDIA_TESLA_T4"}, "accelerator_count"),
        ({"accelerator_count": 1}, "accelerator_count"),
        ({"min_replica_count": 3, "max_replica_count": 2}, "max_replica_count"),
        ({"labels": {"Team": "ml"}}, "labels key"),
        ({"service_account": "not-an-email"}, "service_account"),
        ({"accelerator_type": "t4", "accelerator_count": 1}, "accelerator_type"),
    ],
)
def test_deploy_config_rejects_bad_settings(changes, match):
    with pytest.raises(ConfigError, match=match):
        vertex.DeployConfig(**changes)


def test_target_from_parameters_or_environment(monkeypatch):
    for name in (*vertex.ENV_PROJECT, *vertex.ENV_REGION, *vertex.ENV_API_ENDPOINT):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="project is missing.*GOOGLE_CLOUD_PROJECT"):
        vertex.VertexTarget(region="us-central1").resolve()
    with pytest.raises(ConfigError, match="region is missing"):
        vertex.VertexTarget(project="my-project").resolve()
    with pytest.raises(ConfigError, match="region"):
        vertex.VertexTarget("my-project", "global").resolve()
    monkeypatch.setenv("CLOUD_ML_PROJECT_ID", "env-project")
    monkeypatch.setenv("GOOGLE_CLOUD_REGION", "europe-west4")
    target = vertex.VertexTarget().resolve()
    assert (target.project, target.region, target.host) == (
        "env-project",
        "europe-west4",
        "europe-west4-aiplatform.googleapis.com",
    )
    assert vertex.VertexTarget("p-123456", "us-east1").resolve().project == "p-123456"


def test_default_serving_image_is_the_prebuilt_tensorflow_container():
    assert vertex.default_serving_image("europe-west4", gpu=False) == (
        "europe-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
    )
    assert vertex.default_serving_image("us-central1", gpu=True).endswith("tf2-gpu.2-15:latest")
