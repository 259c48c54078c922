"""The replica pod of every cluster launcher (TFJob, JobSet, TrainJob): its template, its
tolerations and the command it runs.

The pod runs as a non-root user on a read-only root filesystem (caches and ``/dev/shm`` on
``emptyDir`` volumes), drops every capability, and lands on the GPU node pool the request
names. Built from the kubernetes client's models, so a typo in a field name fails here.
"""

from __future__ import annotations

import json
from typing import Protocol

from kubernetes import client as k8s

from tfopt.launch import validate

TFJOB_PORT = 2222  # the port (named tfjob-port) the replicas talk on
RUN_AS_USER = 10001  # the images' non-root user (a high UID)


class PodSettings(Protocol):
    """What the pod takes from a launcher's config (``TFJobConfig``, ``ClusterJobConfig``)."""

    @property
    def image(self) -> str: ...
    @property
    def command(self) -> tuple[str, ...]: ...
    @property
    def request(self) -> validate.TrainingRequest: ...
    @property
    def cpu(self) -> str: ...
    @property
    def memory(self) -> str: ...
    @property
    def node_selector(self) -> dict: ...
    @property
    def tolerations(self) -> tuple[dict, ...]: ...
    @property
    def service_account(self) -> str: ...
    @property
    def labels(self) -> dict: ...


def tolerations(config: PodSettings) -> list[k8s.V1Toleration]:
    tols = [k8s.V1Toleration(**t) for t in config.tolerations]
    if config.request.gpus_per_replica:
        tols.append(
            k8s.V1Toleration(key=validate.GPU_RESOURCE, operator="Exists", effect="NoSchedule")
        )
    return tols


def pod_template(
    config: PodSettings,
    replica_type: str,
    container_name: str,
    extra_env: dict | None = None,
) -> k8s.V1PodTemplateSpec:
    """The pod of one replica type, its container named ``container_name`` (the TFJob
    operator injects ``TF_CONFIG`` into ``tensorflow``; JobSet workers derive it from
    ``extra_env``)."""
    req = config.request
    limits = {"cpu": config.cpu, "memory": config.memory}
    if req.gpus_per_replica:
        limits[validate.GPU_RESOURCE] = str(req.gpus_per_replica)
    container = k8s.V1Container(
        name=container_name,
        image=config.image,
        image_pull_policy="Always",
        command=list(config.command),
        ports=[k8s.V1ContainerPort(name="tfjob-port", container_port=TFJOB_PORT)],
        resources=k8s.V1ResourceRequirements(
            requests={"cpu": config.cpu, "memory": config.memory}, limits=limits
        ),
        env=[
            k8s.V1EnvVar(name="TF_CPP_MIN_LOG_LEVEL", value="1"),
            k8s.V1EnvVar(name="PYTHONUNBUFFERED", value="1"),
            # The root filesystem is read-only: caches go to the /tmp volume.
            k8s.V1EnvVar(name="HOME", value="/tmp"),
            k8s.V1EnvVar(name="KERAS_HOME", value="/tmp/.keras"),
            *(k8s.V1EnvVar(name=k, value=v) for k, v in (extra_env or {}).items()),
        ],
        security_context=k8s.V1SecurityContext(
            run_as_non_root=True,
            run_as_user=RUN_AS_USER,
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        volume_mounts=[
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
            k8s.V1VolumeMount(name="dshm", mount_path="/dev/shm"),
        ],
    )
    labels = {
        **config.labels,
        "app.kubernetes.io/part-of": "tfopt",
        "tfopt/replica-type": replica_type.lower(),
    }
    return k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels=labels),
        spec=k8s.V1PodSpec(
            containers=[container],
            node_selector={**req.node_selector(), **config.node_selector} or None,
            tolerations=tolerations(config) or None,
            service_account_name=config.service_account or None,
            automount_service_account_token=bool(config.service_account),
            security_context=k8s.V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=RUN_AS_USER,
                fs_group=RUN_AS_USER,
                seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
            ),
            volumes=[
                k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource()),
                # NCCL needs more shared memory than the 64 MiB default.
                k8s.V1Volume(
                    name="dshm",
                    empty_dir=k8s.V1EmptyDirVolumeSource(medium="Memory", size_limit="2Gi"),
                ),
            ],
        ),
    )


def to_dict(obj) -> dict:
    """Serialize an SDK model to the JSON the Kubernetes API takes."""
    return k8s.ApiClient().sanitize_for_serialization(obj)


def worker_command(
    dataset_uri: str, model_uri: str, train_config: dict, backup_dir: str = "", result_uri: str = ""
) -> list[str]:
    """The command every replica runs."""
    cmd = [
        "python",
        "-m",
        "tfopt.launch.worker",
        "--dataset",
        dataset_uri,
        "--model",
        model_uri,
        "--config",
        json.dumps(train_config, sort_keys=True),
    ]
    if backup_dir:
        cmd += ["--backup-dir", backup_dir]
    if result_uri:
        cmd += ["--result", result_uri]
    return cmd
