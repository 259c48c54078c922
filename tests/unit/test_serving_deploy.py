"""Infra validation and deploy (push, labels, smoke test, rollback) on tiny real models."""

import os

import numpy as np
import pytest

from tfopt._keras import tf
from tfopt.data import input_pipeline, schema
from tfopt.deploy.serving import config as sc
from tfopt.deploy.serving import deploy, infravalidate, repository
from tfopt.errors import ConfigError
from tfopt.training import models


@pytest.fixture(scope="module")
def assets(tmp_path_factory, digits_dir):
    root = tmp_path_factory.mktemp("serving_deploy")
    info = schema.load_info(digits_dir)
    x, _ = input_pipeline.load_arrays(info, "test", limit=16)
    paths = []
    for i in range(2):
        m = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
        paths.append(models.save_model(m, str(root / f"m{i}")))

    class Other(tf.Module):  # loads and serves, but breaks the hand-off (no `probabilities`)
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x")])
        def serve(self, x):
            return {"scores": tf.reduce_sum(x, axis=[1, 2, 3])}

    other = Other()
    wrong = str(root / "wrong")
    tf.saved_model.save(other, wrong, signatures={"serving_default": other.serve})
    return {"x": x, "good": paths, "wrong": wrong}


def test_infra_validation_blesses_a_servable_model(assets):
    cfg = infravalidate.InfraValidationConfig(
        model_name="digits", num_examples=8, latency_requests=20
    )
    r = infravalidate.infra_validate(assets["good"][0], assets["x"], cfg)
    assert r.infra_blessed, r.reason
    assert r.warmup_requests == 8
    assert r.requests_checked == 9  # 8 replayed warmup requests over gRPC + 1 REST batch
    assert 0.0 <= r.max_abs_diff <= 1e-5
    assert 0 < r.latency_ms_p50 <= r.latency_ms_p99
    assert r.load_seconds > 0
    assert set(r.metrics()) >= {"latency_ms_p50", "max_abs_diff", "load_seconds"}


def test_infra_validation_rejects_with_reason(assets, tmp_path):
    r = infravalidate.infra_validate(
        assets["wrong"], assets["x"], infravalidate.InfraValidationConfig(latency_requests=1)
    )
    assert not r.infra_blessed and "probabilities" in r.reason
    r = infravalidate.infra_validate(str(tmp_path), assets["x"])
    assert not r.infra_blessed and r.reason


def test_deploy_moves_labels_and_keeps_previous(assets, tmp_path):
    base = str(tmp_path / "repo")
    first = deploy.deploy(assets["good"][0], base, assets["x"], deploy.DeployConfig("digits"))
    assert (first.version, first.smoke_test, first.previous_version) == (1, "passed", None)
    assert first.checks["grpc_max_abs_diff"] <= 1e-5
    assert first.grpc_port > 0 and first.rest_port > 0
    entry = sc.read_model_config(os.path.join(base, "models.config"))[0]
    assert entry.label_map == {"stable": 1} and entry.versions == (1,)
    canary = deploy.deploy(
        assets["good"][1], base, assets["x"], deploy.DeployConfig("digits", label="canary")
    )
    assert canary.version == 2 and canary.smoke_test == "passed"
    entry = sc.read_model_config(os.path.join(base, "models.config"))[0]
    assert entry.label_map == {"stable": 1, "canary": 2} and entry.versions == (1, 2)
    promoted = deploy.deploy(assets["good"][1], base, assets["x"], deploy.DeployConfig("digits"))
    assert (promoted.version, promoted.created, promoted.previous_version) == (2, False, 1)
    entry = sc.read_model_config(os.path.join(base, "models.config"))[0]
    assert entry.label_map == {"stable": 2, "canary": 2} and entry.versions == (1, 2)
    out = deploy.write_k8s_manifests(str(tmp_path / "k8s"), base, "digits", variant="gpu")
    assert os.path.isfile(out["yaml"])


def test_failed_smoke_test_rolls_back_stable(assets, tmp_path):
    base = str(tmp_path / "repo")
    deploy.deploy(assets["good"][0], base, assets["x"], deploy.DeployConfig("digits"))
    with pytest.raises(deploy.DeployError, match="rolled back to version 1"):
        deploy.deploy(assets["wrong"], base, assets["x"], deploy.DeployConfig("digits"))
    entry = sc.read_model_config(os.path.join(base, "models.config"))[0]
    assert entry.label_map == {"stable": 1} and entry.versions == (1,)
    assert repository.list_versions(base, "digits") == [1, 2]  # pushed, but not served
    result = deploy.deploy(
        assets["wrong"], base, assets["x"], deploy.DeployConfig("digits"), raise_on_failure=False
    )
    assert result.smoke_test == "failed" and result.rolled_back and result.reason


def test_first_deploy_failure_leaves_nothing_served(assets, tmp_path):
    base = str(tmp_path / "repo")
    summary = deploy.deploy_local(assets["wrong"], base, "digits", assets["x"])
    assert summary["smoke_test"] == "failed"
    assert sc.read_model_config(os.path.join(base, "models.config")) == []
    assert repository.list_versions(base, "digits") == []


def test_deploy_local_summary(assets, tmp_path):
    summary = deploy.deploy_local(assets["good"][0], str(tmp_path / "repo"), "digits", assets["x"])
    assert summary == {
        "model_base_path": str(tmp_path / "repo"),
        "model_name": "digits",
        "version": 1,
        "grpc_port": summary["grpc_port"],
        "rest_port": summary["rest_port"],
        "smoke_test": "passed",
    }
    assert summary["grpc_port"] > 0 and summary["rest_port"] > 0


def test_deploy_config_validation():
    with pytest.raises(ConfigError, match="label"):
        deploy.DeployConfig("m", label="gold")
    with pytest.raises(ConfigError, match="both"):
        deploy.DeployConfig("m", grpc_target="localhost:8500")
    assert np.isfinite(deploy.DeployConfig("m").atol)
