"""A bare JobSet (``jobset.x-k8s.io/v1alpha2``) of identical TensorFlow workers.

For clusters with JobSet and no Kubeflow Trainer. One replicated Job ``node``
runs ``replicas`` pods as an Indexed Job (pod ``i`` has ``JOB_COMPLETION_INDEX=i``);
JobSet's headless service gives each a DNS name, from which every worker
derives the same ``TF_CONFIG`` (:mod:`tfopt.launch.tf_config`). A failed pod
fails its Job, and JobSet recreates all Jobs (``failurePolicy.maxRestarts``):
the restarted workers resume from the BackupAndRestore backup the chief keeps.

The manifest is built from the JobSet models that ``kubeflow-trainer-api``
ships (Trainer v2 runs every TrainJob as a JobSet), and checked against them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kubeflow_trainer_api import models as ktm

from tfopt.checks import check_int, check_str
from tfopt.errors import ConfigError
from tfopt.launch import k8s, tf_config, validate
from tfopt.launch.job import job_name
from tfopt.launch.pod import pod_template, to_dict, worker_command

JOBSET_RESOURCE = k8s.Resource("jobset.x-k8s.io", "v1alpha2", "jobsets", "JobSet", ("Completed",))
REPLICATED_JOB = "node"
CONTAINER_NAME = "node"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")  # pod names add "-node-J-P-xxxxx"
_QUANTITY_RE = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


@dataclass(frozen=True)
class ClusterJobConfig:
    """Shape of a JobSet or TrainJob run.

    Attributes:
        name: object name (DNS label, at most 40 characters).
        namespace: Kubernetes namespace the job runs in.
        image: container image of every worker.
        command: the worker's command (``python -m tfopt.launch.worker ...``).
        request: target (``jobset`` or ``trainjob``), replicas, GPUs per replica.
        cpu / memory: per-worker CPU and memory requests in Kubernetes quantities
            (``4``, ``16Gi``; limits: memory = request).
        timeout_s: the job's active deadline and the launcher's wait, in seconds.
        max_restarts: whole-job restarts after a worker fails (each resumes from the backup).
        node_selector / tolerations: extra scheduling constraints, added to the GPU ones:
            node labels (``{"pool": "train"}``) / Kubernetes tolerations (a list of maps).
        service_account: pod service account ("" = namespace default).
        labels: extra labels on the job and its pods.
        queue_name: Kueue LocalQueue ("" = no queue); sets ``kueue.x-k8s.io/queue-name``.
    """

    name: str
    image: str
    command: tuple[str, ...]
    request: validate.TrainingRequest
    namespace: str = "kubeflow"
    cpu: str = "4"
    memory: str = "16Gi"
    timeout_s: int = 6 * 3600
    max_restarts: int = 3
    node_selector: dict = field(default_factory=dict)
    tolerations: tuple[dict, ...] = ()
    service_account: str = ""
    labels: dict = field(default_factory=dict)
    queue_name: str = ""

    def __post_init__(self):
        name = "ClusterJobConfig"
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(
                f"{name}.name={self.name!r} is not allowed: expected a DNS label "
                "(lowercase letters, digits, '-', at most 40 characters)"
            )
        check_str(name, "image", self.image)
        check_str(name, "namespace", self.namespace)
        if not self.command or not all(isinstance(c, str) for c in self.command):
            raise ConfigError(
                f"{name}.command={self.command!r} is not allowed: expected a "
                "non-empty list of strings"
            )
        if self.request.target not in ("jobset", "trainjob"):
            raise ConfigError(
                f"{name}.request.target={self.request.target!r} is not allowed: "
                "expected 'jobset' or 'trainjob'"
            )
        check_int(name, "timeout_s", self.timeout_s, 60, 30 * 24 * 3600)
        check_int(name, "max_restarts", self.max_restarts, 0, 100)
        for value, what in ((self.cpu, "cpu"), (self.memory, "memory")):
            if not isinstance(value, str) or not _QUANTITY_RE.match(value):
                raise ConfigError(
                    f"{name}.{what}={value!r} is not allowed: expected a "
                    "Kubernetes quantity such as '4', '500m', '16Gi'"
                )
        if self.queue_name and not re.match(
            r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$", str(self.queue_name)
        ):
            raise ConfigError(
                f"{name}.queue_name={self.queue_name!r} is not allowed: expected a "
                "LocalQueue name (DNS subdomain) or ''"
            )

    @property
    def job_labels(self) -> dict[str, str]:
        """Labels of the job object: the caller's, tfopt's, and Kueue's queue."""
        out = {**self.labels, "app.kubernetes.io/part-of": "tfopt"}
        if self.queue_name:
            out[QUEUE_LABEL] = self.queue_name
        return out


def worker_env(replicas: int) -> dict[str, str]:
    """What the workers need beyond JobSet's own variables to derive ``TF_CONFIG``."""
    return {
        tf_config.JOBS_ENV: "1",
        tf_config.PODS_PER_JOB_ENV: str(replicas),
        tf_config.PORT_ENV: str(tf_config.PORT),
    }


def build_jobset(config: ClusterJobConfig) -> dict:
    """The JobSet manifest (validated against ``JobsetV1alpha2JobSet``)."""
    n = config.request.replicas
    pod = to_dict(pod_template(config, "node", CONTAINER_NAME, worker_env(n)))
    pod["metadata"]["labels"].pop("tfopt/replica-type", None)  # chief is rank 0 of one Job
    body = {
        "apiVersion": f"{JOBSET_RESOURCE.group}/{JOBSET_RESOURCE.version}",
        "kind": "JobSet",
        "metadata": {
            "name": config.name,
            "namespace": config.namespace,
            "labels": config.job_labels,
        },
        "spec": {
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
            "failurePolicy": {"maxRestarts": config.max_restarts},
            "successPolicy": {"operator": "All", "targetReplicatedJobs": [REPLICATED_JOB]},
            "ttlSecondsAfterFinished": 24 * 3600,
            "replicatedJobs": [
                {
                    "name": REPLICATED_JOB,
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "parallelism": n,
                            "completions": n,
                            "completionMode": "Indexed",
                            "backoffLimit": 0,  # any failed pod restarts the whole JobSet
                            "activeDeadlineSeconds": config.timeout_s,
                            "template": pod,
                        }
                    },
                }
            ],
        },
    }
    k8s.check_against_model(ktm.JobsetV1alpha2JobSet, body, f"JobSet {config.name}")
    return body


def prepare(dataset_uri: str, model_uri: str, train_config: dict) -> tuple[tuple[str, ...], str]:
    """Check the URIs; return the worker command and where the chief writes its result."""
    validate.check_shared_uri("dataset_uri", dataset_uri)
    validate.check_shared_uri("model_uri", model_uri)
    result_uri = model_uri.rstrip("/") + ".result.json"
    cmd = worker_command(
        dataset_uri,
        model_uri,
        train_config,
        backup_dir=model_uri.rstrip("/") + ".backup",
        result_uri=result_uri,
    )
    return tuple(cmd), result_uri


def read_result(result_uri: str) -> dict:
    from tfopt import fsutil

    return fsutil.read_json(result_uri) if fsutil.exists(result_uri) else {}


def train_on_jobset(
    dataset_uri: str,
    model_uri: str,
    train_config: dict,
    request: validate.TrainingRequest,
    image: str,
    api=None,
    poll_s: float = 15.0,
    **config_kwargs,
) -> dict:
    """Validate, run a JobSet that trains ``dataset_uri`` into ``model_uri``, wait.

    ``config_kwargs`` are :class:`ClusterJobConfig` fields (namespace, cpu,
    memory, timeout_s, queue_name, node_selector, tolerations, name ...).
    Returns the chief's TrainResult as a dict.
    """
    command, result_uri = prepare(dataset_uri, model_uri, train_config)
    if not config_kwargs.get("name"):
        config_kwargs["name"] = job_name()
    config = ClusterJobConfig(image=image, command=command, request=request, **config_kwargs)
    body = build_jobset(config)
    k8s.launch(JOBSET_RESOURCE, body, config.timeout_s, api=api, poll_s=poll_s)
    return read_result(result_uri)
