"""Kubeflow Trainer v2 ``TrainJob`` (``trainer.kubeflow.org/v1alpha1``) on tfopt's runtime.

The TrainJob references the ``tfopt-tensorflow`` ClusterTrainingRuntime shipped
in ``manifests/tensorflow-runtime.yaml`` (plainML plugin: ``numNodes`` pods of
one Indexed Job). It sets the image, the worker command, ``numNodes`` and the
per-node resources, and patches node selectors, tolerations and the service
account into the runtime's pod template (``runtimePatches``). Trainer creates a
JobSet of the same name, so pods, logs and ``TF_CONFIG`` work as for the bare
JobSet target (:mod:`tfopt.launch.jobset`). Manifests are built from and checked
against the ``kubeflow-trainer-api`` models.
"""

from __future__ import annotations

from importlib import resources

import yaml
from kubeflow_trainer_api import models as ktm

from tfopt.launch import jobset, k8s, pod, tf_config, validate
from tfopt.launch.job import job_name

TRAINJOB_RESOURCE = k8s.Resource(
    "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob", ("Complete",)
)
RUNTIME_NAME = "tfopt-tensorflow"
RUNTIME_FILE = "tensorflow-runtime.yaml"
PATCH_MANAGER = "tfopt.launch/trainjob"


def runtime_manifest() -> dict:
    """The shipped ClusterTrainingRuntime, checked against the Trainer API model."""
    text = resources.files("tfopt.launch").joinpath("manifests", RUNTIME_FILE).read_text()
    body = yaml.safe_load(text)
    k8s.check_against_model(ktm.TrainerV1alpha1ClusterTrainingRuntime, body, RUNTIME_FILE)
    return body


def _pod_patch(config: jobset.ClusterJobConfig) -> dict:
    tolerations = [pod.to_dict(t) for t in pod.tolerations(config)]
    spec = {
        "nodeSelector": {**config.request.node_selector(), **config.node_selector},
        "tolerations": tolerations,
        "serviceAccountName": config.service_account,
    }
    return {k: v for k, v in spec.items() if v}


def build_trainjob(config: jobset.ClusterJobConfig, runtime: str = RUNTIME_NAME) -> dict:
    """The TrainJob manifest (validated against ``TrainerV1alpha1TrainJob``)."""
    req = config.request
    limits = {"cpu": config.cpu, "memory": config.memory}
    if req.gpus_per_replica:
        limits[validate.GPU_RESOURCE] = str(req.gpus_per_replica)
    spec = {
        "runtimeRef": {
            "apiGroup": TRAINJOB_RESOURCE.group,
            "kind": "ClusterTrainingRuntime",
            "name": runtime,
        },
        "activeDeadlineSeconds": config.timeout_s,
        "trainer": {
            "image": config.image,
            "command": list(config.command),
            "numNodes": req.replicas,
            "resourcesPerNode": {
                "requests": {"cpu": config.cpu, "memory": config.memory},
                "limits": limits,
            },
            "env": [
                {"name": k, "value": v}
                for k, v in jobset.worker_env(req.replicas).items()
                if k == tf_config.PODS_PER_JOB_ENV
            ],
        },
    }
    pod = _pod_patch(config)
    if pod:
        node = {"name": jobset.REPLICATED_JOB, "template": {"spec": {"template": {"spec": pod}}}}
        spec["runtimePatches"] = [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node]}}},
            }
        ]
    body = {
        "apiVersion": f"{TRAINJOB_RESOURCE.group}/{TRAINJOB_RESOURCE.version}",
        "kind": "TrainJob",
        "metadata": {
            "name": config.name,
            "namespace": config.namespace,
            "labels": config.job_labels,
        },
        "spec": spec,
    }
    k8s.check_against_model(ktm.TrainerV1alpha1TrainJob, body, f"TrainJob {config.name}")
    return body


def train_on_trainjob(
    dataset_uri: str,
    model_uri: str,
    train_config: dict,
    request: validate.TrainingRequest,
    image: str,
    api=None,
    poll_s: float = 15.0,
    runtime: str = RUNTIME_NAME,
    **config_kwargs,
) -> dict:
    """Validate, run a TrainJob that trains ``dataset_uri`` into ``model_uri``, wait.

    ``config_kwargs`` are :class:`tfopt.launch.jobset.ClusterJobConfig` fields.
    Returns the chief's TrainResult as a dict.
    """
    command, result_uri = jobset.prepare(dataset_uri, model_uri, train_config)
    if not config_kwargs.get("name"):
        config_kwargs["name"] = job_name()
    config = jobset.ClusterJobConfig(image=image, command=command, request=request, **config_kwargs)
    body = build_trainjob(config, runtime)
    k8s.launch(TRAINJOB_RESOURCE, body, config.timeout_s, api=api, poll_s=poll_s)
    return jobset.read_result(result_uri)
