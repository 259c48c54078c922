"""The deploy_kserve component end to end: a KServe stand-in (tfopt's local server as the
predictor) and a Kubeflow Model Registry stand-in, through the real ``kubernetes`` and
``model-registry`` clients (a kubeconfig and a service-account token file, as in a pod)."""

from __future__ import annotations

import pytest
import yaml
from kfp import dsl
from kserve_standin_server import KServeStandIn
from model_registry_standin import RegistryStandIn

from tfopt import fsutil
from tfopt.components.deploy_kserve import deploy_kserve
from tfopt.deploy import model_registry as mr
from tfopt.reporting.summary import build_summary
from tfopt.training import models

STORAGE = "pvc://tfopt-models/repo"
RUN = "tfopt-optimize-20260101-120000"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("kserve_registry_models")
    out = []
    for i in range(2):
        m = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
        out.append(models.save_model(m, str(root / f"m{i}")))
    return out


@pytest.fixture
def env(tmp_path, monkeypatch, digits_dir):
    repo = str(tmp_path / "repo")
    kserve = KServeStandIn({STORAGE: repo}).start()
    registry = RegistryStandIn(token="sa-token").start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": kserve.url}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    token = tmp_path / "token"
    token.write_text("sa-token")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    summary_path = str(tmp_path / "summary.json")
    summary = build_summary(
        "tfopt-optimize",
        {"name": "digits", "num_test": 356, "content_sha256": "d1g1t5"},
        "baseline",
        [
            {
                "name": "baseline",
                "format": "saved_model",
                "accuracy": 0.97,
                "size_bytes": 90000,
                "latency_ms_p50": 0.41,
                "latency_ms_p99": 0.93,
            },
            {
                "name": "pruned",
                "format": "saved_model",
                "accuracy": 0.9635,
                "size_bytes": 31234,
                "latency_ms_p50": 0.38,
                "latency_ms_p99": 0.81,
                "base": "baseline",  # the compressed model's evaluation record names its base
            },
        ],
        selected="pruned",
        blessed=True,
    )
    fsutil.write_json(summary_path, summary)
    yield {
        "kserve": kserve,
        "registry": registry,
        "repo": repo,
        "tmp": tmp_path,
        "token": token,
        "summary": summary,
        "args": {
            "dataset": dsl.Dataset(uri=digits_dir),
            "summary": dsl.Artifact(uri=summary_path),
            "serving_base_path": repo,
            "storage_uri": STORAGE,
            "model_name": "digits",
            "namespace": "default",
            "timeout_s": 60.0,
            "model_registry_host": registry.url,
            "pipeline_run": RUN,
        },
    }
    kserve.stop()
    registry.stop()


def _run(env, model: str, n: int):
    outs = {
        "metrics": dsl.Metrics(uri=str(env["tmp"] / f"metrics{n}")),
        "inference_service": dsl.Artifact(uri=str(env["tmp"] / f"isvc{n}.yaml")),
    }
    deploy_kserve.python_func(model=dsl.Model(uri=model), **outs, **env["args"])
    return outs


def _versions(registry: RegistryStandIn) -> dict[str, dict]:
    return {v["name"]: v for v in registry.versions.values()}


def test_registered_version_carries_the_summary_figures_and_reruns_add_none(env, saved):
    first = _run(env, saved[0], 1)
    assert first["metrics"].metadata["promoted"] == 1 and first["metrics"].metadata["registered"]
    with open(first["inference_service"].path) as fh:
        applied = yaml.safe_load(fh)
    assert applied["kind"] == "InferenceService"
    assert applied["spec"]["predictor"]["model"]["storageUri"] == f"{STORAGE}/digits"

    client = mr.connect(mr.RegistryConfig(env["registry"].url))
    mv = client.get_model_version("digits", "1")
    picked = next(v for v in env["summary"]["variants"] if v["name"] == "pruned")
    props = mv.custom_properties
    assert {
        k: props[k] for k in ("accuracy", "size_bytes", "latency_ms_p50", "latency_ms_p99")
    } == {k: picked[k] for k in ("accuracy", "size_bytes", "latency_ms_p50", "latency_ms_p99")}
    assert props["dataset_sha256"] == env["summary"]["dataset"]["content_sha256"]
    assert props["technique_lineage"] == "baseline>pruned" and props["variant"] == "pruned"
    assert props["pipeline_run"] == RUN and "parent_version" not in props  # a first deploy
    assert props["inference_service"] == "default/digits"
    art = client.get_model_artifact("digits", "1")
    assert (art.uri, art.model_format_name, art.model_format_version) == (
        f"{STORAGE}/digits/1",
        "tensorflow",
        "2",
    )

    _run(env, saved[1], 2)
    assert client.get_model_version("digits", "2").custom_properties["parent_version"] == "1"
    creates = sum(
        1
        for c in env["registry"].calls
        if c[:2] == ("POST", "/api/model_registry/v1/model_versions")
    )
    rerun = _run(env, saved[1], 3)  # the same model again: same serving version, no new one
    assert rerun["inference_service"].metadata["model_registry"]["created"] is False
    assert sorted(_versions(env["registry"])) == ["1", "2"]
    assert (
        creates
        == 2
        == sum(
            1
            for c in env["registry"].calls
            if c[:2] == ("POST", "/api/model_registry/v1/model_versions")
        )
    )


def test_registry_that_refuses_auth_keeps_the_deploy(env, saved):
    env["token"].write_text("expired-token")
    with pytest.raises(mr.RegistryError, match="refused tfopt's credentials") as err:
        _run(env, saved[0], 1)
    assert "HTTP 401" in str(err.value) and "The deploy itself is kept" in str(err.value)
    assert env["kserve"].traffic("digits") == {"digits-predictor-00001": 100}  # still serving
    assert env["registry"].versions == {}
    env["token"].write_text("sa-token")  # access granted: the re-run only registers
    writes = len(env["kserve"].bodies)
    out = _run(env, saved[0], 2)
    assert out["inference_service"].metadata["model_registry"]["created"] is True
    assert len(env["kserve"].bodies) == writes and sorted(_versions(env["registry"])) == ["1"]


def test_registry_errors_are_clear_before_anything_is_registered(env, monkeypatch):
    cfg = mr.RegistryConfig(env["registry"].url)
    env["registry"].forbidden = ("sa-token",)
    with pytest.raises(mr.RegistryError, match="HTTP 403"):
        mr.register_version(cfg, "digits", "1", "gs://b/r/digits/1", "saved_model", {})
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(env["tmp"] / "no-token"))
    with pytest.raises(mr.RegistryError, match="no credentials for the Model Registry"):
        mr.register_version(cfg, "digits", "1", "gs://b/r/digits/1", "saved_model", {})
    with pytest.raises(mr.ConfigError, match="http"):
        mr.RegistryConfig("ftp://registry")
    assert env["registry"].versions == {}
