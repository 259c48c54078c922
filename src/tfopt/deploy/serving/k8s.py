"""Kubernetes manifests for the official ``tensorflow/serving`` image.

Per model: a ConfigMap (``models.config``, batching parameters, monitoring
config), a Deployment (pinned image, CPU or GPU variant, resources, readiness
and liveness probes on the model status endpoint ``/v1/models/<name>``) and a
Service (gRPC 8500, REST 8501). Manifests are plain dicts in the API's JSON
shape; :func:`validate` round-trips them through the kubernetes client's models.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from tfopt import fsutil
from tfopt.checks import check_choice, check_int, check_str
from tfopt.deploy.serving import config as serving_config
from tfopt.errors import ConfigError

# Pinned official images (CPU / GPU). tensorflow-serving-api's protos are wire-compatible.
TF_SERVING_VERSION = "2.19.1"
IMAGES = {
    "cpu": f"tensorflow/serving:{TF_SERVING_VERSION}",
    "gpu": f"tensorflow/serving:{TF_SERVING_VERSION}-gpu",
}
GRPC_PORT = 8500
REST_PORT = 8501
CONFIG_MOUNT = "/etc/tfserving"


@dataclass(frozen=True)
class K8sConfig:
    """What the manifests describe.

    Attributes:
        model_name: served model name (also names the Kubernetes objects).
        model_base_path: repository root the pods read (``gs://...`` or a mounted path);
            the model is at ``<root>/<model_name>``.
        variant: ``cpu`` or ``gpu`` (image, GPU limit, node selector, toleration).
        image: override the pinned image.
        namespace, replicas: where and how many.
        cpu_request, memory_request, cpu_limit, memory_limit: container resources.
        gpu_count: GPUs per pod (gpu variant).
        gpu_node_selector: ``key=value`` node label for GPU pods ('' = none).
        versions, labels: version policy (``specific``) and labels; empty = latest.
        enable_batching: pass the batching parameters file to the server.
        poll_seconds: ``--model_config_file_poll_wait_seconds`` and file system poll.
    """

    model_name: str
    model_base_path: str
    variant: str = "cpu"
    image: str = ""
    namespace: str = "default"
    replicas: int = 1
    cpu_request: str = "500m"
    memory_request: str = "1Gi"
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"
    gpu_count: int = 1
    gpu_node_selector: str = ""
    versions: tuple[int, ...] = ()
    labels: tuple[tuple[str, int], ...] = ()
    enable_batching: bool = True
    poll_seconds: int = 60

    def __post_init__(self):
        check_str("K8sConfig", "model_name", self.model_name)
        check_str("K8sConfig", "model_base_path", self.model_base_path)
        check_choice("K8sConfig", "variant", self.variant, tuple(IMAGES))
        check_int("K8sConfig", "replicas", self.replicas, 0, 1000)
        check_int("K8sConfig", "gpu_count", self.gpu_count, 1, 16)
        check_int("K8sConfig", "poll_seconds", self.poll_seconds, 1, 86_400)
        name = self.model_name.lower().replace("_", "-")
        if not name.replace("-", "").isalnum() or len(name) > 50:
            raise ConfigError(
                f"K8sConfig.model_name={self.model_name!r} is not allowed: "
                f"expected letters, digits, '-' or '_' (at most 50)"
            )
        if self.gpu_node_selector and "=" not in self.gpu_node_selector:
            raise ConfigError(
                f"K8sConfig.gpu_node_selector={self.gpu_node_selector!r} is not "
                f"allowed: expected key=value"
            )

    @property
    def app_name(self) -> str:
        return f"tfserving-{self.model_name.lower().replace('_', '-')}"


def model_entry(cfg: K8sConfig) -> serving_config.ModelEntry:
    base = cfg.model_base_path.rstrip("/") + "/" + cfg.model_name
    if cfg.versions:
        return serving_config.ModelEntry(
            cfg.model_name, base, policy="specific", versions=cfg.versions, labels=cfg.labels
        )
    return serving_config.ModelEntry(cfg.model_name, base, labels=cfg.labels)


def manifests(cfg: K8sConfig) -> list[dict]:
    """[ConfigMap, Deployment, Service] as dicts in the Kubernetes API's JSON shape."""
    app = cfg.app_name
    meta = {
        "name": app,
        "namespace": cfg.namespace,
        "labels": {"app": app, "app.kubernetes.io/component": "tf-serving"},
    }
    return [_config_map(cfg, meta), _deployment(cfg, meta), _service(app, meta)]


def _config_map(cfg: K8sConfig, meta: dict) -> dict:
    """``models.config``, the batching parameters and the monitoring config."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {**meta, "name": f"{cfg.app_name}-config"},
        "data": {
            serving_config.MODELS_CONFIG: serving_config.format_model_config([model_entry(cfg)]),
            serving_config.BATCHING_CONFIG: serving_config.format_batching_config(),
            serving_config.MONITORING_CONFIG: serving_config.format_monitoring_config(),
        },
    }


def _server_args(cfg: K8sConfig) -> list[str]:
    """``tensorflow_model_server``'s flags: ports, the mounted config files, polling."""
    args = [
        f"--port={GRPC_PORT}",
        f"--rest_api_port={REST_PORT}",
        f"--model_config_file={CONFIG_MOUNT}/{serving_config.MODELS_CONFIG}",
        f"--model_config_file_poll_wait_seconds={cfg.poll_seconds}",
        f"--file_system_poll_wait_seconds={cfg.poll_seconds}",
        f"--monitoring_config_file={CONFIG_MOUNT}/{serving_config.MONITORING_CONFIG}",
        "--enable_model_warmup=true",
    ]
    if cfg.enable_batching:
        args += [
            "--enable_batching=true",
            f"--batching_parameters_file={CONFIG_MOUNT}/{serving_config.BATCHING_CONFIG}",
        ]
    if cfg.labels:
        args.append("--allow_version_labels_for_unavailable_models=false")
    return args


def _probe(path: str, initial_delay: int, period: int, timeout: int, failures: int) -> dict:
    return {
        "httpGet": {"path": path, "port": "http"},
        "initialDelaySeconds": initial_delay,
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
    }


def _container(cfg: K8sConfig) -> dict:
    """The server container: image, flags, ports, resources, probes on the model status."""
    resources = {
        "requests": {"cpu": cfg.cpu_request, "memory": cfg.memory_request},
        "limits": {"cpu": cfg.cpu_limit, "memory": cfg.memory_limit},
    }
    if cfg.variant == "gpu":
        resources["limits"]["nvidia.com/gpu"] = str(cfg.gpu_count)
    status_path = f"/v1/models/{cfg.model_name}"
    return {
        "name": "tf-serving",
        "image": cfg.image or IMAGES[cfg.variant],
        "args": _server_args(cfg),
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"},
        ],
        "resources": resources,
        "readinessProbe": _probe(status_path, 5, 5, 2, 3),
        "livenessProbe": _probe(status_path, 60, 15, 5, 4),
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}],
    }


def _gpu_scheduling(cfg: K8sConfig) -> dict:
    """The GPU variant's toleration and node selector (nothing for CPU)."""
    pod_spec: dict = {}
    if cfg.variant == "gpu":
        pod_spec["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
        if cfg.gpu_node_selector:
            key, value = cfg.gpu_node_selector.split("=", 1)
            pod_spec["nodeSelector"] = {key: value}
    return pod_spec


def _deployment(cfg: K8sConfig, meta: dict) -> dict:
    """Rolling updates without losing capacity; pods scraped by Prometheus."""
    app = cfg.app_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": cfg.replicas,
            "selector": {"matchLabels": {"app": app}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": {"app": app},
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(REST_PORT),
                        "prometheus.io/path": serving_config.PROMETHEUS_PATH,
                    },
                },
                "spec": {
                    **_gpu_scheduling(cfg),
                    "containers": [_container(cfg)],
                    "volumes": [{"name": "config", "configMap": {"name": f"{app}-config"}}],
                },
            },
        },
    }


def _service(app: str, meta: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": {"app": app},
            "ports": [
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
                {"name": "http", "port": REST_PORT, "targetPort": "http"},
            ],
        },
    }


_KINDS = {"ConfigMap": "V1ConfigMap", "Deployment": "V1Deployment", "Service": "V1Service"}


def validate(manifest: dict):
    """Deserialize with the kubernetes client's models; fail if a field is unknown or invalid.

    Returns the typed object (e.g. ``V1Deployment``).
    """
    from kubernetes import client

    kind = manifest.get("kind")
    if kind not in _KINDS:
        raise ConfigError(
            f"manifest kind {kind!r} is not allowed: expected one of {sorted(_KINDS)}"
        )

    class _Response:  # ApiClient.deserialize reads .data like an HTTP response
        data = json.dumps(manifest)

    api = client.ApiClient()
    try:
        obj = api.deserialize(_Response(), _KINDS[kind])
    except ValueError as exc:
        raise ConfigError(f"{kind} manifest is invalid: {exc}") from None
    back = api.sanitize_for_serialization(obj)
    if back != manifest:
        raise ConfigError(
            f"{kind} manifest has fields the Kubernetes API does not know: {_diff(manifest, back)}"
        )
    return obj


def _diff(a, b, path: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in a:
            if k not in b:
                return f"{path}.{k}"
            d = _diff(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return ""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _diff(x, y, f"{path}[{i}]")
            if d:
                return d
        return ""
    return "" if a == b else path or "."


def write_manifests(directory: str, cfg: K8sConfig) -> dict[str, str]:
    """Validate and write ``<app>.yaml`` (all three documents) plus one JSON per object."""
    import yaml

    docs = manifests(cfg)
    for doc in docs:
        validate(doc)
    out = {}
    path = os.path.join(directory, f"{cfg.app_name}.yaml")
    with fsutil.atomic_file(path) as fh:
        yaml.safe_dump_all(docs, fh, sort_keys=False)
    out["yaml"] = path
    for doc in docs:
        p = os.path.join(directory, f"{doc['kind'].lower()}.json")
        fsutil.write_json(p, doc)
        out[doc["kind"]] = p
    return out
