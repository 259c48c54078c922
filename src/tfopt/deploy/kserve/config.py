"""How a model is served by KServe (:class:`KServeConfig`) and what came of it."""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlparse

from tfopt import fsutil
from tfopt.checks import check_choice, check_float, check_int, check_str
from tfopt.errors import ConfigError, TfoptError

# Storage KServe's storage initializer reads (pkg/agent/storage and kserve/storage):
# a local path names the step's own file system, which no predictor pod can read.
STORAGE_SCHEMES = ("gs", "s3", "pvc", "hdfs", "webhdfs", "https", "http", "oci", "hf")
VARIANTS = ("cpu", "gpu")
# An InferenceService name is a DNS-1035 label; KServe appends "-predictor-00001" and
# Knative a tag ("latest-" / "prev-") to it within 63 characters.
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME = 36


class KServeError(TfoptError):
    """The InferenceService did not get ready or failed its smoke test (rolled back)."""


def isvc_name(model_name: str) -> str:
    """The InferenceService (and served model) name for ``model_name``: lower case, '-'."""
    return re.sub(r"[_.]", "-", model_name.lower())


def check_storage_uri(uri: str, field: str) -> str:
    """``uri`` if the cluster's storage initializer can read it; ConfigError otherwise."""
    scheme = urlparse(uri).scheme
    if scheme not in STORAGE_SCHEMES:
        what = "a local path" if not scheme or scheme == "file" else f"scheme {scheme!r}"
        raise ConfigError(
            f"KServeConfig.{field}={uri!r} is not allowed: {what} cannot be read by the "
            f"cluster's predictor pods; expected a URI KServe's storage initializer reads "
            f"({', '.join(s + '://' for s in STORAGE_SCHEMES)}), e.g. gs://bucket/models or "
            f"pvc://<claim>/<path> for a volume mounted at serving_base_path in this step"
        )
    return uri.rstrip("/")


@dataclasses.dataclass(frozen=True)
class KServeConfig:
    """What the InferenceService serves, where, on what, and how it rolls out.

    Attributes:
        model_name: The model's name; the InferenceService and its served model are
            named after it (lower case, '_' and '.' as '-').
        serving_base_path: The TF Serving repository this step pushes to (gs://... or a
            mounted path); the model goes to <serving_base_path>/<model_name>/<version>.
        storage_uri: The same repository as the cluster reads it (gs://, s3://,
            pvc://<claim>/<path> ...); '' = serving_base_path, which must then be a URI.
        namespace: Kubernetes namespace of the InferenceService ('' = this pod's own).
        variant: cpu or gpu: the TF Serving runtime image (runtimeVersion), the GPU
            limit, node selector and toleration.
        accelerator_type: The GPU (Vertex-style name, e.g. NVIDIA_TESLA_T4) whose node
            pool the gpu variant's predictor is scheduled on.
        gpu_count: GPUs per predictor pod (gpu variant).
        cpu_request: CPU request of the predictor container.
        memory_request: Memory request of the predictor container.
        cpu_limit: CPU limit of the predictor container.
        memory_limit: Memory limit of the predictor container.
        min_replicas: Fewest predictor pods (0 lets Knative scale to zero).
        max_replicas: Most predictor pods.
        canary_percent: Traffic the new revision gets while it is smoke-tested (1-99);
            a first deploy takes 100% at once.
        timeout_s: How long a new revision may take to become ready before it is rolled
            back.
        smoke_examples: Test-split examples sent in the smoke test.
        atol: Largest allowed |served - offline| difference of a smoke prediction.
        runtime: ServingRuntime to use ('' = KServe picks the one for tensorflow).
    """

    model_name: str = "tfopt-model"
    serving_base_path: str = ""
    storage_uri: str = ""
    namespace: str = ""
    variant: str = "cpu"
    accelerator_type: str = "NVIDIA_TESLA_T4"
    gpu_count: int = 1
    cpu_request: str = "1"
    memory_request: str = "2Gi"
    cpu_limit: str = "2"
    memory_limit: str = "4Gi"
    min_replicas: int = 1
    max_replicas: int = 1
    canary_percent: int = 10
    timeout_s: float = 600.0
    smoke_examples: int = 8
    atol: float = 1e-5
    runtime: str = ""

    def __post_init__(self):
        own = "KServeConfig"
        check_str(own, "model_name", self.model_name)
        name = isvc_name(self.model_name)
        if not NAME_RE.match(name) or len(name) > MAX_NAME:
            raise ConfigError(
                f"{own}.model_name={self.model_name!r} is not allowed: the InferenceService "
                f"name {name!r} must start with a letter, hold only letters, digits, '-', "
                f"'_' or '.' and end with a letter or digit (at most {MAX_NAME})"
            )
        check_str(own, "serving_base_path", self.serving_base_path)
        check_str(own, "namespace", self.namespace, allow_empty=True)
        check_choice(own, "variant", self.variant, VARIANTS)
        check_str(own, "accelerator_type", self.accelerator_type)
        check_int(own, "gpu_count", self.gpu_count, 1, 16)
        for field in ("cpu_request", "memory_request", "cpu_limit", "memory_limit"):
            check_str(own, field, getattr(self, field))
        check_int(own, "min_replicas", self.min_replicas, 0, 1000)
        check_int(own, "max_replicas", self.max_replicas, max(1, self.min_replicas), 1000)
        check_int(own, "canary_percent", self.canary_percent, 1, 99)
        check_float(own, "timeout_s", self.timeout_s, 0.0, 86_400.0, low_open=True)
        check_int(own, "smoke_examples", self.smoke_examples, 1, 1000)
        check_float(own, "atol", self.atol, 0.0, 1.0)
        check_str(own, "runtime", self.runtime, allow_empty=True)
        if self.storage_uri:
            check_storage_uri(self.storage_uri, "storage_uri")
        elif not fsutil.is_remote(self.serving_base_path):
            raise ConfigError(
                f"{own}.serving_base_path={self.serving_base_path!r} is a local path the "
                "cluster's predictor pods cannot read: give storage_uri, the same repository "
                "as the cluster reads it (e.g. pvc://<claim>/<path> for a volume mounted "
                "there), or a gs:// / s3:// serving_base_path"
            )
        else:
            check_storage_uri(self.serving_base_path, "serving_base_path")

    @property
    def name(self) -> str:
        """The InferenceService's name, which is also the model name TF Serving serves."""
        return isvc_name(self.model_name)

    @property
    def cluster_repository(self) -> str:
        """The repository root as the cluster's storage initializer reads it."""
        return (self.storage_uri or self.serving_base_path).rstrip("/")

    def storage_uri_of_model(self) -> str:
        """``storageUri``: the model's folder of the repository (its version folders)."""
        return f"{self.cluster_repository}/{self.model_name}"


@dataclasses.dataclass
class KServeResult:
    """What a KServe deploy did.

    Attributes:
        name: The InferenceService's name.
        namespace: Its namespace.
        version: The repository version it serves (or was to serve).
        created: False when the repository already held this content (nothing pushed).
        revision: The predictor revision of this version.
        previous_revision: The revision that served before ('' = none: a first deploy).
        parent_version: The repository version this one replaced ('' = none).
        promoted: True when the new revision took all traffic.
        rolled_back: True when traffic went back to ``previous_revision``.
        smoke_test: passed | failed | skipped (an unchanged deploy).
        reason: Why it was rolled back ('' when promoted).
        url: The InferenceService's URL.
        checks: The smoke test's figures (max differences from offline predictions).
        storage_uri: The storageUri the predictor reads.
    """

    name: str
    namespace: str
    version: int
    created: bool = True
    revision: str = ""
    previous_revision: str = ""
    parent_version: str = ""
    promoted: bool = False
    rolled_back: bool = False
    smoke_test: str = "failed"
    reason: str = ""
    url: str = ""
    checks: dict = dataclasses.field(default_factory=dict)
    storage_uri: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
