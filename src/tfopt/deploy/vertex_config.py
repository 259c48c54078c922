"""How a model is deployed to Vertex AI (:class:`DeployConfig`) and what came of it."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from tfopt.checks import check_choice, check_int, check_str
from tfopt.deploy.vertex_target import check_labels
from tfopt.errors import ConfigError

# Newest pre-built TensorFlow prediction container google-cloud-aiplatform knows.
TF_SERVING_VERSION = "2.15"


@dataclasses.dataclass(frozen=True)
class DeployConfig:
    """How a model is uploaded, deployed, smoke-tested and promoted.

    Attributes:
        model_display_name: Model Registry name; a model with this name becomes the
            parent and the upload a new version of it.
        parent_model: Parent model resource name or id ("" = look up by display name).
        endpoint: Endpoint resource name or id to reuse ("" = look up
            ``endpoint_display_name``, create it when absent).
        endpoint_display_name: Display name used to find or create the endpoint.
        serving_image: Serving container URI ("" = pre-built TensorFlow container of
            the region, CPU or GPU to match ``accelerator_type``).
        machine_type: Compute Engine machine type of each serving replica
            (e.g. ``n1-standard-2``).
        accelerator_type: GPU of each replica, e.g. ``NVIDIA_TESLA_T4`` ("" = none).
        accelerator_count: GPUs of that type per replica (0 with no accelerator_type).
        min_replica_count / max_replica_count: the autoscaling bounds of the deployed
            model's replicas.
        canary_percent: Traffic the new version gets while it is tested (1-100).
        smoke_requests: Predictions to send at most (0 = enough to reach a healthy
            canary with probability 0.999).
        undeploy_previous: After promotion, undeploy the models that now get 0%.
        service_account: Service account the deployed model runs as
            ("" = env ``TFOPT_SERVICE_ACCOUNT``, else Vertex's default).
        labels: Labels set on the model and the endpoint.
        timeout_s: Seconds to wait for each long-running operation.
    """

    model_display_name: str = "tfopt-model"
    parent_model: str = ""
    endpoint: str = ""
    endpoint_display_name: str = "tfopt-endpoint"
    serving_image: str = ""
    machine_type: str = "n1-standard-2"
    accelerator_type: str = ""
    accelerator_count: int = 0
    min_replica_count: int = 1
    max_replica_count: int = 1
    canary_percent: int = 10
    smoke_requests: int = 0
    undeploy_previous: bool = True
    service_account: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    timeout_s: float = 1800.0

    def __post_init__(self):
        owner = "DeployConfig"
        check_str(owner, "model_display_name", self.model_display_name)
        check_str(owner, "endpoint_display_name", self.endpoint_display_name)
        check_str(owner, "machine_type", self.machine_type)
        for name in (
            "parent_model",
            "endpoint",
            "serving_image",
            "accelerator_type",
            "service_account",
        ):
            check_str(owner, name, getattr(self, name), allow_empty=True)
        if self.accelerator_type and not re.match(r"^[A-Z0-9_]+$", self.accelerator_type):
            raise ConfigError(
                f"{owner}.accelerator_type={self.accelerator_type!r} is not "
                "allowed: expected a Vertex AcceleratorType like 'NVIDIA_TESLA_T4'"
            )
        check_int(owner, "accelerator_count", self.accelerator_count, 0, 16)
        if bool(self.accelerator_type) != (self.accelerator_count > 0):
            raise ConfigError(
                f"{owner}.accelerator_count={self.accelerator_count!r} is not "
                f"allowed with accelerator_type={self.accelerator_type!r}: expected "
                ">= 1 with an accelerator type and 0 without"
            )
        check_int(owner, "min_replica_count", self.min_replica_count, 1, 1000)
        check_int(owner, "max_replica_count", self.max_replica_count, self.min_replica_count, 1000)
        check_int(owner, "canary_percent", self.canary_percent, 1, 100)
        check_int(owner, "smoke_requests", self.smoke_requests, 0, 10000)
        check_choice(owner, "undeploy_previous", self.undeploy_previous, (True, False))
        check_labels(owner, self.labels)
        if self.service_account and "@" not in self.service_account:
            raise ConfigError(
                f"{owner}.service_account={self.service_account!r} is not "
                "allowed: expected a service account e-mail"
            )
        if (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, int | float)
            or self.timeout_s <= 0
        ):
            raise ConfigError(
                f"{owner}.timeout_s={self.timeout_s!r} is not allowed: expected a positive number"
            )


@dataclasses.dataclass
class DeployResult:
    """What :func:`deploy_model` did."""

    model: str
    model_version_id: str
    endpoint: str
    deployed_model_id: str
    promoted: bool
    previous_split: dict[str, int]
    canary_split: dict[str, int]
    final_split: dict[str, int]
    undeployed: list[str]
    smoke_requests: int
    canary_answers: int
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_serving_image(region: str, gpu: bool) -> str:
    """Pre-built TensorFlow serving container for the region's geography."""
    from google.cloud.aiplatform import helpers

    return helpers.get_prebuilt_prediction_container_uri(
        framework="tensorflow",
        framework_version=TF_SERVING_VERSION,
        region=region,
        accelerator="gpu" if gpu else "cpu",
    )
