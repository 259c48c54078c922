"""JobSet manifest (checked against the JobSet API models) and TF_CONFIG from JobSet env."""

import copy
import json

import pytest
from kubeflow_trainer_api import models as ktm

from tfopt import distribute
from tfopt.errors import ConfigError
from tfopt.launch import jobset, k8s, tf_config, validate


def make_config(replicas=3, gpus=1, **kw):
    req = validate.TrainingRequest("jobset", replicas, gpus, "NVIDIA_L4")
    kw = {"name": "tfopt-js", "image": "img:1", "namespace": "ml", **kw}
    return jobset.ClusterJobConfig(
        command=("python", "-m", "tfopt.launch.worker"), request=req, **kw
    )


def test_jobset_shape_and_scheduling():
    body = jobset.build_jobset(
        make_config(
            queue_name="team-gpus",
            node_selector={"pool": "a"},
            tolerations=({"key": "spot", "operator": "Exists", "effect": "NoSchedule"},),
            max_restarts=5,
        )
    )
    model = ktm.JobsetV1alpha2JobSet.from_dict(body)
    assert k8s.dropped_fields(body, model.to_dict()) == []  # the models know every field
    assert body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-gpus"
    spec = body["spec"]
    assert spec["failurePolicy"] == {"maxRestarts": 5}
    assert spec["network"]["enableDNSHostnames"] is True
    [rjob] = spec["replicatedJobs"]
    job = rjob["template"]["spec"]
    assert (rjob["name"], rjob["replicas"]) == ("node", 1)
    assert (job["parallelism"], job["completions"], job["completionMode"]) == (3, 3, "Indexed")
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] == 6 * 3600
    pod = job["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "a"}
    assert {t["key"] for t in pod["tolerations"]} == {"spot", "nvidia.com/gpu"}
    [c] = pod["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env[tf_config.PODS_PER_JOB_ENV] == "3" and env[tf_config.JOBS_ENV] == "1"
    assert c["ports"][0]["containerPort"] == int(env[tf_config.PORT_ENV])


def test_no_queue_label_without_queue():
    body = jobset.build_jobset(make_config(gpus=0))
    assert "kueue.x-k8s.io/queue-name" not in body["metadata"]["labels"]
    assert (
        "nodeSelector"
        not in body["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    )


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"name": "Bad_Name"}, "name"),
        ({"name": "x" * 41}, "name"),
        ({"queue_name": "Team Queue"}, "queue_name"),
        ({"max_restarts": -1}, "max_restarts"),
        ({"memory": "lots"}, "memory"),
        ({"timeout_s": 5}, "timeout_s"),
    ],
)
def test_bad_config_is_rejected(kw, field):
    with pytest.raises(ConfigError, match=rf"ClusterJobConfig\.{field}="):
        make_config(**kw)


def test_wrong_target_is_rejected():
    with pytest.raises(ConfigError, match="expected 'jobset' or 'trainjob'"):
        jobset.ClusterJobConfig(
            name="a", image="i", command=("x",), request=validate.TrainingRequest("tfjob", 2)
        )


def test_model_check_catches_unknown_and_mistyped_fields():
    body = jobset.build_jobset(make_config())
    typo = copy.deepcopy(body)
    typo["spec"]["replicatedJobs"][0]["template"]["spec"]["paralelism"] = 3
    with pytest.raises(ConfigError, match=r"paralelism"):
        k8s.check_against_model(ktm.JobsetV1alpha2JobSet, typo, "JobSet x")
    wrong = copy.deepcopy(body)
    wrong["spec"]["failurePolicy"]["maxRestarts"] = "3"
    with pytest.raises(ConfigError, match="does not match JobsetV1alpha2JobSet"):
        k8s.check_against_model(ktm.JobsetV1alpha2JobSet, wrong, "JobSet x")


def jobset_env(job_index=0, pod_index=0, pods=3, jobs=1, **extra):
    return {
        "JOBSET_NAME": "tfopt-js",
        "REPLICATED_JOB_NAME": "node",
        "JOB_INDEX": str(job_index),
        "JOB_COMPLETION_INDEX": str(pod_index),
        tf_config.PODS_PER_JOB_ENV: str(pods),
        tf_config.JOBS_ENV: str(jobs),
        **extra,
    }


def test_tf_config_from_jobset_env_matches_pod_dns_names():
    hosts = [f"tfopt-js-node-0-{i}.tfopt-js:2222" for i in range(3)]
    configs = [tf_config.from_jobset_env(jobset_env(pod_index=i)) for i in range(3)]
    for cfg in configs:  # every pod computes the same cluster
        assert cfg["cluster"] == {"chief": hosts[:1], "worker": hosts[1:]}
    assert [c["task"] for c in configs] == [
        {"type": "chief", "index": 0},
        {"type": "worker", "index": 0},
        {"type": "worker", "index": 1},
    ]
    spec = distribute.parse_tf_config(json.dumps(configs[2]))
    assert spec.num_workers == 3 and not spec.is_chief


def test_tf_config_spans_several_jobs_and_a_custom_subdomain():
    env = jobset_env(
        job_index=1, pod_index=0, pods=2, jobs=2, TFOPT_SUBDOMAIN="net", TFOPT_PORT="9000"
    )
    cfg = tf_config.from_jobset_env(env)
    assert cfg["cluster"]["worker"] == [
        "tfopt-js-node-0-1.net:9000",
        "tfopt-js-node-1-0.net:9000",
        "tfopt-js-node-1-1.net:9000",
    ]
    assert cfg["task"] == {"type": "worker", "index": 1}  # rank 2


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"JOBSET_NAME": "a"}, "lacks REPLICATED_JOB_NAME, JOB_INDEX, JOB_COMPLETION_INDEX"),
        (jobset_env(pod_index=3), "lie outside"),
        (jobset_env(pods="x"), "TFOPT_PODS_PER_JOB='x'"),
        (jobset_env(pods=0), "TFOPT_PODS_PER_JOB='0'"),
    ],
)
def test_tf_config_rejects_bad_env(env, match):
    with pytest.raises(ConfigError, match=match):
        tf_config.from_jobset_env(env)


def test_ensure_tf_config_keeps_an_explicit_one_and_skips_single_pods():
    env = {**jobset_env(pod_index=1), "TF_CONFIG": '{"cluster": {}}'}
    assert tf_config.ensure_tf_config(env) == "TF_CONFIG" and env["TF_CONFIG"] == '{"cluster": {}}'
    single = jobset_env(pods=1)
    assert tf_config.ensure_tf_config(single) == "" and "TF_CONFIG" not in single
    assert tf_config.ensure_tf_config({}) == ""
    env = jobset_env(pod_index=2)
    assert tf_config.ensure_tf_config(env) == "jobset"
    assert json.loads(env["TF_CONFIG"])["task"] == {"type": "worker", "index": 1}
