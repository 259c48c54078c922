"""Kubernetes manifests, validated by the kubernetes client's own models."""

import os

import pytest
import yaml
from kubernetes import client

from tfopt.deploy.serving import config as sc
from tfopt.deploy.serving import k8s
from tfopt.errors import ConfigError


def _cfg(**kw):
    return k8s.K8sConfig(
        model_name="digits",
        model_base_path="gs://bucket/models",
        versions=(3, 4),
        labels=(("stable", 4), ("canary", 3)),
        **kw,
    )


def test_cpu_manifests_validate_and_probe_model_status():
    cm, dep, svc = k8s.manifests(_cfg())
    assert isinstance(k8s.validate(cm), client.V1ConfigMap)
    d = k8s.validate(dep)
    assert isinstance(d, client.V1Deployment)
    assert isinstance(k8s.validate(svc), client.V1Service)
    c = d.spec.template.spec.containers[0]
    assert c.image == "tensorflow/serving:" + k8s.TF_SERVING_VERSION
    assert c.readiness_probe.http_get.path == "/v1/models/digits"
    assert c.liveness_probe.http_get.path == "/v1/models/digits"
    assert c.resources.requests == {"cpu": "500m", "memory": "1Gi"}
    assert "nvidia.com/gpu" not in c.resources.limits
    assert "--model_config_file=/etc/tfserving/models.config" in c.args
    assert any(a.startswith("--batching_parameters_file=") for a in c.args)
    assert d.spec.template.spec.volumes[0].config_map.name == "tfserving-digits-config"
    entries = sc.parse_model_config(cm["data"]["models.config"])
    assert entries[0].base_path == "gs://bucket/models/digits"
    assert entries[0].label_map == {"stable": 4, "canary": 3}
    assert {p.port for p in k8s.validate(svc).spec.ports} == {8500, 8501}


def test_gpu_variant():
    _, dep, _ = k8s.manifests(
        _cfg(
            variant="gpu",
            gpu_count=2,
            gpu_node_selector="cloud.google.com/gke-accelerator=nvidia-l4",
        )
    )
    d = k8s.validate(dep)
    spec = d.spec.template.spec
    assert spec.containers[0].image.endswith("-gpu")
    assert spec.containers[0].resources.limits["nvidia.com/gpu"] == "2"
    assert spec.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert spec.tolerations[0].key == "nvidia.com/gpu"


def test_validate_rejects_unknown_and_invalid_fields():
    _, dep, _ = k8s.manifests(_cfg())
    container = dep["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe_typo"] = container.pop("readinessProbe")
    with pytest.raises(ConfigError, match="readinesProbe_typo"):
        k8s.validate(dep)
    _, dep, _ = k8s.manifests(_cfg())
    del dep["spec"]["selector"]  # required by V1DeploymentSpec
    with pytest.raises(ConfigError, match="selector"):
        k8s.validate(dep)


@pytest.mark.parametrize(
    "kw",
    [
        {"variant": "tpu"},
        {"model_name": "bad name!"},
        {"gpu_node_selector": "nolabel"},
        {"replicas": -1},
    ],
)
def test_config_rejects_bad_values(kw):
    base = {"model_name": "digits", "model_base_path": "/models", **kw}
    with pytest.raises(ConfigError):
        k8s.K8sConfig(**base)


def test_write_manifests(tmp_path):
    out = k8s.write_manifests(str(tmp_path), _cfg())
    with open(out["yaml"]) as fh:
        docs = list(yaml.safe_load_all(fh))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service"]
    assert os.path.isfile(out["Deployment"])
