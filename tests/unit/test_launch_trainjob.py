"""Trainer v2 TrainJob and the shipped ClusterTrainingRuntime, checked against the API models."""

import pytest
from kubeflow_trainer_api import models as ktm

from tfopt.errors import ConfigError
from tfopt.launch import jobset, k8s, tf_config, trainjob, validate


def make_config(replicas=4, gpus=2, **kw):
    req = validate.TrainingRequest("trainjob", replicas, gpus, "NVIDIA_H100_80GB")
    kw = {"name": "tfopt-tj", "image": "img:2", "namespace": "ml", **kw}
    return jobset.ClusterJobConfig(
        command=("python", "-m", "tfopt.launch.worker"), request=req, **kw
    )


def test_runtime_is_plainml_with_one_indexed_node_job():
    body = trainjob.runtime_manifest()
    model = ktm.TrainerV1alpha1ClusterTrainingRuntime.from_dict(body)
    assert k8s.dropped_fields(body, model.to_dict()) == []
    assert body["metadata"]["name"] == trainjob.RUNTIME_NAME
    policy = body["spec"]["mlPolicy"]
    assert set(policy) == {"numNodes"}  # no torch/mpi/jax/...: the plainML plugin
    js = body["spec"]["template"]["spec"]
    assert js["network"] == {"enableDNSHostnames": True, "publishNotReadyAddresses": True}
    [node] = js["replicatedJobs"]
    assert node["name"] == jobset.REPLICATED_JOB
    labels = node["template"]["metadata"]["labels"]
    assert labels["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    [c] = node["template"]["spec"]["template"]["spec"]["containers"]
    assert c["name"] == jobset.CONTAINER_NAME
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env[tf_config.PORT_ENV] == str(c["ports"][0]["containerPort"]) == "2222"
    assert env[tf_config.JOBS_ENV] == "1"


def test_trainjob_references_runtime_and_sets_shape():
    body = trainjob.build_trainjob(
        make_config(
            queue_name="gpu-queue",
            node_selector={"pool": "h100"},
            tolerations=(
                {"key": "team", "operator": "Equal", "value": "a", "effect": "NoSchedule"},
            ),
            service_account="trainer",
        )
    )
    assert k8s.dropped_fields(body, ktm.TrainerV1alpha1TrainJob.from_dict(body).to_dict()) == []
    assert body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    spec = body["spec"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "tfopt-tensorflow",
    }
    trainer = spec["trainer"]
    assert trainer["numNodes"] == 4 and trainer["image"] == "img:2"
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "2"
    assert trainer["env"] == [{"name": tf_config.PODS_PER_JOB_ENV, "value": "4"}]
    [patch] = spec["runtimePatches"]
    [node] = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    pod = node["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-h100-80gb",
        "pool": "h100",
    }
    assert {t["key"] for t in pod["tolerations"]} == {"team", "nvidia.com/gpu"}
    assert pod["serviceAccountName"] == "trainer"


def test_cpu_trainjob_without_scheduling_has_no_patch_and_no_queue():
    body = trainjob.build_trainjob(make_config(replicas=2, gpus=0))
    assert "runtimePatches" not in body["spec"]
    assert "kueue.x-k8s.io/queue-name" not in body["metadata"]["labels"]
    assert "nvidia.com/gpu" not in body["spec"]["trainer"]["resourcesPerNode"]["limits"]


def test_trainjob_model_check_rejects_v2alpha1_style_fields():
    body = trainjob.build_trainjob(make_config())
    body["spec"]["podTemplateOverrides"] = [{"targetJobs": [{"name": "node"}]}]
    with pytest.raises(ConfigError, match=r"\.spec\.podTemplateOverrides"):
        k8s.check_against_model(ktm.TrainerV1alpha1TrainJob, body, "TrainJob x")


def test_bad_uri_fails_before_anything_is_submitted():
    with pytest.raises(ConfigError, match="dataset_uri='minio://b/d'"):
        trainjob.train_on_trainjob(
            "minio://b/d",
            "gs://b/m",
            {},
            validate.TrainingRequest("trainjob", 2),
            "img",
            api=object(),
        )
