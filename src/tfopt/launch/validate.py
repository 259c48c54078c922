"""Checks on a distributed training request, run before anything is submitted.

No TensorFlow here: the launch components call these in a CPU pod.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from tfopt import distribute

# GKE's node labels and the GPU resource: shared with the KServe deploy (re-exported).
from tfopt.accelerators import (  # noqa: F401
    GKE_ACCELERATOR_LABEL,
    GKE_ACCELERATORS,
    GPU_RESOURCE,
    gke_accelerator,
)
from tfopt.checks import check_choice, check_int, check_str
from tfopt.errors import ConfigError

log = logging.getLogger(__name__)

TARGETS = ("local", "tfjob", "trainjob", "jobset", "vertex")
# Old spellings, still accepted with a warning: "kubeflow" named the TFJob target, while
# the submit target of Kubeflow Pipelines is "kfp".
DEPRECATED_TARGETS = {"kubeflow": "tfjob"}
MAX_REPLICAS = 64
MAX_GPUS_PER_REPLICA = 16
# In-cluster ("local") training is one pod: MirroredStrategy over its GPUs.
MAX_REPLICAS_BY_TARGET = {
    "local": 1,
    "tfjob": MAX_REPLICAS,
    "trainjob": MAX_REPLICAS,
    "jobset": MAX_REPLICAS,
    "vertex": MAX_REPLICAS,
}


def vertex_accelerator_types() -> tuple[str, ...]:
    """GPU accelerator names Vertex AI knows (aiplatform's own ``AcceleratorType`` enum)."""
    from google.cloud.aiplatform_v1.types.accelerator_type import AcceleratorType

    return tuple(n for n in AcceleratorType.__members__ if n.startswith("NVIDIA_"))


def current_target(target: str) -> str:
    """``target`` as it is spelled now; an old spelling logs a deprecation warning."""
    new = DEPRECATED_TARGETS.get(target) if isinstance(target, str) else None
    if new is None:
        return target
    log.warning("training target %r is deprecated: use %r (same target)", target, new)
    return new


def accelerator_types(target: str) -> tuple[str, ...]:
    """Accelerator types ``target`` can schedule."""
    if target == "vertex":
        return vertex_accelerator_types()
    return tuple(GKE_ACCELERATORS)


@dataclass(frozen=True)
class TrainingRequest:
    """Where and how big a training run is.

    Attributes:
        target: ``local`` (one pod in the pipeline), ``trainjob`` (Kubeflow Trainer v2),
            ``jobset`` (bare JobSet), ``tfjob`` (legacy TFJob) or ``vertex``; the old
            ``kubeflow`` is taken as ``tfjob`` with a warning.
        replicas: worker processes (chief included); each runs on one machine/pod.
        gpus_per_replica: GPUs each replica gets (0 = CPU).
        accelerator_type: Vertex AI style name, e.g. ``NVIDIA_TESLA_T4``.
        max_replicas: the most replicas allowed for this run.
    """

    target: str = "local"
    replicas: int = 1
    gpus_per_replica: int = 0
    accelerator_type: str = "NVIDIA_TESLA_T4"
    max_replicas: int = MAX_REPLICAS

    def __post_init__(self):
        name = "TrainingRequest"
        object.__setattr__(self, "target", current_target(self.target))
        check_choice(name, "target", self.target, TARGETS)
        check_int(name, "max_replicas", self.max_replicas, 1, MAX_REPLICAS)
        limit = min(self.max_replicas, MAX_REPLICAS_BY_TARGET[self.target])
        if (
            isinstance(self.replicas, int)
            and not isinstance(self.replicas, bool)
            and self.replicas > limit
        ):
            why = (
                (
                    " (target 'local' trains in one pod; use target 'trainjob', 'jobset', "
                    "'tfjob' or 'vertex' for several workers)"
                )
                if self.target == "local"
                else ""
            )
            raise ConfigError(
                f"{name}.replicas={self.replicas!r} is not allowed: at most "
                f"{limit} for target {self.target!r}{why}"
            )
        check_int(name, "replicas", self.replicas, 1, limit)
        check_int(name, "gpus_per_replica", self.gpus_per_replica, 0, MAX_GPUS_PER_REPLICA)
        check_str(name, "accelerator_type", self.accelerator_type)
        if self.gpus_per_replica:
            known = accelerator_types(self.target)
            if self.accelerator_type not in known:
                raise ConfigError(
                    f"{name}.accelerator_type={self.accelerator_type!r} is not known to "
                    f"target {self.target!r}: expected one of {', '.join(known)}"
                )

    @property
    def gke_accelerator(self) -> str:
        """GKE node label value for the accelerator ('' for CPU-only runs)."""
        if not self.gpus_per_replica:
            return ""
        return gke_accelerator(self.accelerator_type)

    def node_selector(self) -> dict[str, str]:
        """Kubernetes node selector that puts a GPU replica on the right node pool."""
        return {GKE_ACCELERATOR_LABEL: self.gke_accelerator} if self.gpus_per_replica else {}


def check_tf_config(raw: str | dict) -> distribute.ClusterSpec:
    """Validate a ``TF_CONFIG`` (JSON text or dict) with the rules training uses."""
    text = json.dumps(raw) if isinstance(raw, dict) else raw
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("TF_CONFIG is empty: expected a JSON object with 'cluster' and 'task'")
    return distribute.parse_tf_config(text)


_SHARED_SCHEMES = ("gs://", "/")


def check_shared_uri(field: str, uri: str) -> str:
    """Return ``uri`` if every replica can reach it (``gs://`` or a mounted path).

    KFP's default MinIO root (``minio://``, ``s3://``) cannot be read by TensorFlow
    without extra plugins, so remote training needs a ``gs://`` pipeline root or a
    shared volume mounted at the same path in every pod.
    """
    check_str("launch", field, uri)
    if not uri.startswith(_SHARED_SCHEMES):
        raise ConfigError(
            f"launch.{field}={uri!r} is not allowed: remote replicas need a gs:// URI or an "
            "absolute path on a shared volume (set the pipeline root to gs://... or mount a PVC)"
        )
    return uri
