"""The InferenceService tfopt applies, and the TF Serving config that pins its version.

KServe's ``tensorflow`` model format runs TF Serving (``kserve-tensorflow-serving``:
``--model_name=<isvc> --model_base_path=/mnt/models``), where the storage initializer
copies ``storageUri``. ``storageUri`` is the model's folder of tfopt's TF Serving
repository, so the version folders, warmup records and signatures are TF Serving's as
pushed. Each revision pins its version with ``--model_config_file`` (TF Serving reads the
file instead of ``--model_base_path`` when both are given): a ``specific`` version policy
written next to the versions as ``tfopt-kserve-<version>.config``. So a revision keeps
serving its own version when its pods restart, after later pushes and after a rollback.
"""

from __future__ import annotations

from tfopt import accelerators
from tfopt.deploy.kserve.config import KServeConfig
from tfopt.deploy.kserve.schema import validate
from tfopt.deploy.serving import config as serving_config
from tfopt.deploy.serving.k8s import TF_SERVING_VERSION

API_GROUP = "serving.kserve.io"
API_VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"
MOUNT = "/mnt/models"  # where KServe's storage initializer puts storageUri
TAG_ROUTING = "serving.kserve.io/enable-tag-routing"  # "latest" / "prev" URLs per revision
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"  # canaries need Knative (Serverless)
VERSION_ANNOTATION = "tfopt.dev/model-version"
PARENT_ANNOTATION = "tfopt.dev/parent-version"  # the version it replaced
CONTENT_ANNOTATION = "tfopt.dev/content-sha256"
MANAGED_BY = {"app.kubernetes.io/managed-by": "tfopt"}


def version_config_name(version: int) -> str:
    """The pinning config's file name inside the model's folder (TF Serving skips it:
    only numeric folders are versions)."""
    return f"tfopt-kserve-{version}.config"


def version_config(cfg: KServeConfig, version: int) -> str:
    """``ModelServerConfig`` text: the InferenceService's model, exactly ``version``."""
    entry = serving_config.ModelEntry(cfg.name, MOUNT, policy="specific", versions=(version,))
    return serving_config.format_model_config([entry])


def runtime_version(cfg: KServeConfig) -> str:
    """The ``tensorflow/serving`` image tag of the runtime: tfopt's pinned TF Serving."""
    return f"{TF_SERVING_VERSION}-gpu" if cfg.variant == "gpu" else TF_SERVING_VERSION


def predictor_model(cfg: KServeConfig, version: int) -> dict:
    """``spec.predictor.model``: the format, runtime, storage, pinned version and resources."""
    resources = {
        "requests": {"cpu": cfg.cpu_request, "memory": cfg.memory_request},
        "limits": {"cpu": cfg.cpu_limit, "memory": cfg.memory_limit},
    }
    if cfg.variant == "gpu":
        resources["limits"][accelerators.GPU_RESOURCE] = str(cfg.gpu_count)
    model = {
        "modelFormat": {"name": "tensorflow", "version": "2"},
        "protocolVersion": "v1",
        "runtimeVersion": runtime_version(cfg),
        "storageUri": cfg.storage_uri_of_model(),
        "args": [f"--model_config_file={MOUNT}/{version_config_name(version)}"],
        "resources": resources,
    }
    if cfg.runtime:
        model["runtime"] = cfg.runtime
    return model


def inference_service(
    cfg: KServeConfig,
    namespace: str,
    version: int,
    content_sha256: str = "",
    canary_percent: int | None = None,
    parent_version: str = "",
) -> dict:
    """The InferenceService of ``version``, checked against KServe's CRD schema.

    ``canary_percent`` None: the revision takes all traffic (a first deploy, a promotion).
    """
    predictor: dict = {
        "minReplicas": cfg.min_replicas,
        "maxReplicas": cfg.max_replicas,
        "model": predictor_model(cfg, version),
    }
    if cfg.variant == "gpu":
        predictor["nodeSelector"] = accelerators.gpu_node_selector(cfg.accelerator_type)
        predictor["tolerations"] = [dict(accelerators.GPU_TOLERATION)]
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    annotations = {
        TAG_ROUTING: "true",
        DEPLOYMENT_MODE: "Serverless",
        VERSION_ANNOTATION: str(version),
    }
    if content_sha256:
        annotations[CONTENT_ANNOTATION] = content_sha256
    if parent_version:
        annotations[PARENT_ANNOTATION] = parent_version
    return validate(
        {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "metadata": {
                "name": cfg.name,
                "namespace": namespace,
                "labels": {**MANAGED_BY, "tfopt.dev/model": cfg.name},
                "annotations": annotations,
            },
            "spec": {"predictor": predictor},
        }
    )


def same_model(live: dict, wanted: dict) -> bool:
    """Whether the live InferenceService already serves what ``wanted`` describes: the same
    version annotation, storage and pinning arguments (the API server's defaults and the
    traffic split aside). Then applying ``wanted`` would make no new revision."""

    def key(doc: dict) -> tuple:
        annotations = (doc.get("metadata") or {}).get("annotations") or {}
        model = ((doc.get("spec") or {}).get("predictor") or {}).get("model") or {}
        return (
            annotations.get(VERSION_ANNOTATION),
            model.get("storageUri"),
            model.get("args"),
            model.get("runtimeVersion"),
        )

    return key(live) == key(wanted)
