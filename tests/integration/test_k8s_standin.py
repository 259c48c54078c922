"""TrainJob / JobSet launch, wait, fail, timeout and cancel against a Kubernetes stand-in.

tfopt's launchers talk Kubernetes REST through the real ``kubernetes`` client to
``K8sStandIn`` (loopback HTTP), whose controller thread writes pods, logs and
status conditions the way Trainer, JobSet and Kueue do.
"""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest
from k8s_standin_server import K8sStandIn

from tfopt.launch import jobset, k8s, trainjob, validate
from tfopt.launch.tfjob import LaunchError

from helpers.signals import callers_sigterm_handler

# A guard against hangs, not a speed check: the component test pays a cold import of kfp
# and the launchers (24 s with both cores busy, so 60 s was too close on a loaded CI runner).
pytestmark = pytest.mark.timeout(300)
TRAIN_CONFIG = {"epochs": 3, "learning_rate": 0.0042, "model": {"arch": "mlp", "width": 24}}


@pytest.fixture
def standin():
    server = K8sStandIn().start()
    yield server
    server.stop()


def _config(target: str, name: str, **kw) -> jobset.ClusterJobConfig:
    return jobset.ClusterJobConfig(
        name=name,
        image="ghcr.io/tfopt/tfopt-gpu:test",
        command=("python", "-m", "tfopt.launch.worker"),
        request=validate.TrainingRequest(target, 2, 0),
        namespace="team-a",
        **kw,
    )


def test_trainjob_queued_then_completes_and_passes_hyperparameters(standin, tmp_path, capsys):
    result = trainjob.train_on_trainjob(
        str(tmp_path / "data"),
        str(tmp_path / "model"),
        TRAIN_CONFIG,
        validate.TrainingRequest("trainjob", 2, 0),
        "ghcr.io/tfopt/tfopt-gpu:test",
        api=standin.api_client(),
        poll_s=2,
        name="tj-ok",
        namespace="team-a",
        queue_name="gpu-queue",
        node_selector={"pool": "train"},
    )
    assert result == {}  # the stand-in runs no training, so no chief result file
    [job] = standin.created("trainjobs")
    assert job["metadata"]["labels"][jobset.QUEUE_LABEL] == "gpu-queue"
    assert job["spec"]["runtimeRef"]["name"] == trainjob.RUNTIME_NAME
    assert job["spec"]["trainer"]["numNodes"] == 2
    cmd = job["spec"]["trainer"]["command"]
    assert json.loads(cmd[cmd.index("--config") + 1]) == TRAIN_CONFIG
    assert cmd[cmd.index("--backup-dir") + 1] == str(tmp_path / "model") + ".backup"
    conds = {c["type"]: c for c in job["status"]["conditions"]}
    assert conds["Suspended"]["status"] == "False"  # admitted by the queue first
    assert conds["Complete"]["status"] == "True"
    out = capsys.readouterr().out  # both pods' logs were streamed, each line once
    for i in range(2):
        lines = [ln for ln in out.splitlines() if ln.startswith(f"[tj-ok-node-0-{i}-")]
        assert len(lines) == 40 and lines[0].endswith("epoch 1 step 10"), lines[:2]
    verbs = [v for v, p, _ in standin.calls if "/trainjobs" in p]
    assert verbs[0] == "POST" and "DELETE" not in verbs and "GET" in verbs


def test_jobset_failure_names_the_pod_and_its_last_lines(standin):
    standin.scenario = "fail"
    body = jobset.build_jobset(_config("jobset", "js-fail"))
    with pytest.raises(LaunchError) as err:
        k8s.launch(jobset.JOBSET_RESOURCE, body, 30, api=standin.api_client(), poll_s=2)
    text = str(err.value)
    assert "JobSet team-a/js-fail failed: reason=FailedJobs" in text
    assert "--- last lines of js-fail-node-0-1-" in text
    assert text.rstrip().endswith("ValueError: loss is NaN at step 400")
    assert len(text.split("--- last lines of")[1].splitlines()) == 1 + k8s.LOG_TAIL_LINES
    # a failed job is kept for inspection (ttlSecondsAfterFinished cleans it up)
    assert "DELETE" not in [v for v, _, _ in standin.calls]


def test_api_errors_while_waiting_are_retried(standin):
    standin.fail_watches = 2
    body = jobset.build_jobset(_config("jobset", "js-flaky"))
    outcome = k8s.launch(jobset.JOBSET_RESOURCE, body, 30, api=standin.api_client(), poll_s=2)
    assert outcome.succeeded and outcome.reason == "AllJobsCompleted"
    assert standin.fail_watches == 0
    assert "DELETE" not in [v for v, _, _ in standin.calls]


def test_persistent_api_errors_give_up_and_delete(standin, monkeypatch):
    monkeypatch.setattr(k8s, "MAX_API_ERRORS", 1)
    standin.scenario, standin.fail_watches = "hang", 10
    body = jobset.build_jobset(_config("jobset", "js-lost"))
    with pytest.raises(LaunchError, match="2 API errors in a row, last: .*500"):
        k8s.launch(jobset.JOBSET_RESOURCE, body, 30, api=standin.api_client(), poll_s=1)
    assert standin.created("jobsets") == []


def test_timeout_deletes_the_job(standin):
    standin.scenario = "hang"
    body = trainjob.build_trainjob(_config("trainjob", "tj-slow"))
    with pytest.raises(LaunchError, match="did not finish within 2 s"):
        k8s.launch(trainjob.TRAINJOB_RESOURCE, body, 2, api=standin.api_client(), poll_s=1)
    assert (
        "DELETE",
        "/apis/trainer.kubeflow.org/v1alpha1/namespaces/team-a/trainjobs/tj-slow",
    ) in [c[:2] for c in standin.calls]
    assert standin.created("trainjobs") == [] and standin.pods == {}


def test_sigterm_deletes_the_job(standin):
    standin.scenario = "hang"
    body = jobset.build_jobset(_config("jobset", "js-cancel"))
    done = threading.Event()

    def cancel_while_waiting():
        # On the launcher's first read after the create, not after a fixed delay: on a
        # loaded machine that could fire before its handler is in and kill the test run.
        while not done.wait(0.05):
            if any(v == "GET" and p.endswith("/jobsets") for v, p, _ in list(standin.calls)):
                os.kill(os.getpid(), signal.SIGTERM)
                return

    with callers_sigterm_handler() as callers:
        canceller = threading.Thread(target=cancel_while_waiting, daemon=True)
        canceller.start()
        try:
            with pytest.raises(
                LaunchError, match="launcher cancelled .*deleted JobSet team-a/js-cancel"
            ):
                k8s.launch(jobset.JOBSET_RESOURCE, body, 30, api=standin.api_client(), poll_s=5)
        finally:
            done.set()
            canceller.join()
        assert signal.getsignal(signal.SIGTERM) is callers  # the previous handler is back
    assert standin.created("jobsets") == []


def test_server_rejects_a_malformed_body(standin):
    from kubernetes.client import CustomObjectsApi
    from kubernetes.client.exceptions import ApiException

    body = trainjob.build_trainjob(_config("trainjob", "tj-bad"))
    body["spec"]["trainer"]["numNodes"] = "two"
    with pytest.raises(ApiException) as err:
        CustomObjectsApi(standin.api_client()).create_namespaced_custom_object(
            "trainer.kubeflow.org", "v1alpha1", "team-a", "trainjobs", body
        )
    assert err.value.status == 422


@pytest.mark.parametrize("kind", ["trainjob", "jobset"])
def test_component_sends_tuned_hyperparameters_and_queue(standin, tmp_path, monkeypatch, kind):
    """The KFP component, configured by a kubeconfig that points at the stand-in."""
    import yaml
    from kfp import dsl

    from tfopt.components.train_jobset import train_jobset
    from tfopt.components.train_trainjob import train_trainjob

    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "standin", "cluster": {"server": standin.url}}],
        "users": [{"name": "u", "user": {"token": "test"}}],
        "contexts": [{"name": "c", "context": {"cluster": "standin", "user": "u"}}],
        "current-context": "c",
    }
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    tuned = dsl.Artifact(uri=str(tmp_path / "best"))
    (tmp_path / "best").write_text(json.dumps({"learning_rate": 0.0123, "width": 48}))
    component = {"trainjob": train_trainjob, "jobset": train_jobset}[kind]
    uri = component.python_func(
        dataset=dsl.Dataset(uri=str(tmp_path / "data")),
        model=dsl.Model(uri=str(tmp_path / "model")),
        metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        hyperparameters=tuned,
        train_config={"epochs": 2.0, "arch": "mlp"},  # numbers cross KFP as floats
        replicas=3,
        gpus_per_replica=0,
        namespace="team-a",
        queue_name="gpu-queue",
        node_selector={"pool": "batch"},
    )
    assert uri == str(tmp_path / "model")
    [job] = standin.created(f"{kind}s")
    assert job["metadata"]["labels"][jobset.QUEUE_LABEL] == "gpu-queue"
    if kind == "trainjob":
        cmd = job["spec"]["trainer"]["command"]
    else:
        pod = job["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"pool": "batch"}
        cmd = pod["containers"][0]["command"]
    sent = json.loads(cmd[cmd.index("--config") + 1])
    assert sent["learning_rate"] == 0.0123 and sent["model"]["width"] == 48  # tuned
    assert sent["epochs"] == 2 and sent["model"]["arch"] == "mlp"  # the step's own settings
