"""TFJob spec (checked against the SDK models) and launcher (against a loopback
stand-in of the Kubernetes API that speaks the same REST paths and JSON)."""

import json
import re
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from kubeflow.training import TrainingClient
from kubeflow.training.api_client import ApiClient as TrainingApiClient
from kubeflow.training.utils import utils as kt_utils
from kubernetes import client as k8s

from tfopt.components._image import GPU_IMAGE
from tfopt.errors import ConfigError
from tfopt.launch import tfjob, validate

from helpers.signals import callers_sigterm_handler, sigterm_when


def make_config(replicas=3, gpus=2, accel="NVIDIA_L4", **kw):
    req = validate.TrainingRequest("tfjob", replicas, gpus, accel)
    cmd = tfjob.worker_command("gs://b/ds", "gs://b/model", {"epochs": 3}, "gs://b/bk")
    kw = {"name": "tfopt-train-1", "image": GPU_IMAGE, "namespace": "ml", **kw}
    return tfjob.TFJobConfig(command=tuple(cmd), request=req, **kw)


def roundtrip(job):
    """Serialize as the API client would send it, then deserialize with the SDK's models."""
    body = tfjob.to_dict(job)
    again = TrainingApiClient().deserialize(kt_utils.FakeResponse(body), "KubeflowOrgV1TFJob")
    return body, again


def test_tfjob_spec_roundtrips_through_sdk_models():
    body, job = roundtrip(tfjob.build_tfjob(make_config()))
    assert body["apiVersion"] == "kubeflow.org/v1" and body["kind"] == "TFJob"
    assert tfjob.to_dict(job) == body  # nothing lost or renamed by the SDK's models
    specs = job.spec.tf_replica_specs
    assert {k: v.replicas for k, v in specs.items()} == {"Chief": 1, "Worker": 2}
    for spec in specs.values():
        assert spec.restart_policy == "ExitCode"
        pod = spec.template.spec
        (c,) = pod.containers
        assert c.name == "tensorflow" and c.image == GPU_IMAGE
        assert c.resources.limits == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "2"}
        assert c.command[:3] == ["python", "-m", "tfopt.launch.worker"]
        assert json.loads(c.command[c.command.index("--config") + 1]) == {"epochs": 3}
        assert pod.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
        assert [(t.key, t.operator, t.effect) for t in pod.tolerations] == [
            ("nvidia.com/gpu", "Exists", "NoSchedule")
        ]
        assert pod.security_context.run_as_non_root and c.security_context.run_as_user == 10001
        assert c.security_context.read_only_root_filesystem
    rp = job.spec.run_policy
    assert (rp.active_deadline_seconds, rp.backoff_limit, rp.clean_pod_policy) == (
        21600,
        3,
        "Running",
    )


def test_single_replica_cpu_job_has_only_a_chief():
    req = validate.TrainingRequest("tfjob", 1, 0)
    cfg = tfjob.TFJobConfig(
        name="a1",
        image="img",
        command=("python",),
        request=req,
        node_selector={"pool": "cpu"},
        tolerations=({"key": "spot", "operator": "Exists"},),
    )
    _, job = roundtrip(tfjob.build_tfjob(cfg))
    assert list(job.spec.tf_replica_specs) == ["Chief"]
    pod = job.spec.tf_replica_specs["Chief"].template.spec
    assert "nvidia.com/gpu" not in pod.containers[0].resources.limits
    assert pod.node_selector == {"pool": "cpu"}
    assert [t.key for t in pod.tolerations] == ["spot"]


def test_pod_manifests_are_valid_pods():
    pods = tfjob.pod_manifests(tfjob.build_tfjob(make_config()))
    assert [p["metadata"]["name"] for p in pods] == [
        "tfopt-train-1-chief-0",
        "tfopt-train-1-worker-0",
    ]
    for p in pods:
        pod = k8s.ApiClient().deserialize(kt_utils.FakeResponse(p), "V1Pod")
        assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "2"


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"name": "Bad_Name"}, "DNS label"),
        ({"cpu": "four"}, "Kubernetes quantity"),
        ({"timeout_s": 5}, "timeout_s=5"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ConfigError, match=match):
        make_config(**kw)


def test_wrong_target_rejected():
    with pytest.raises(ConfigError, match="expected 'tfjob'"):
        tfjob.TFJobConfig(
            name="a", image="i", command=("x",), request=validate.TrainingRequest("vertex", 2, 0)
        )


# ------------------------------------------------------------- Kubernetes API stand-in


class FakeKubeApi:
    """Loopback stand-in for the TFJob custom-resource and pod endpoints."""

    def __init__(self, statuses, logs=None):
        self.statuses = list(statuses)  # status returned by successive GETs (last repeats)
        self.logs = logs or {}
        self.jobs, self.deleted, self.gets = {}, [], 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, payload, text=False):
                data = payload.encode() if text else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain" if text else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                m = re.fullmatch(r"/apis/kubeflow.org/v1/namespaces/([^/]+)/tfjobs", self.path)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not m or body.get("kind") != "TFJob":
                    return self._send(404, {"kind": "Status", "code": 404})
                api.jobs[body["metadata"]["name"]] = body
                self._send(201, body)
                return None

            def do_GET(self):
                path = self.path.split("?")[0]
                m = re.fullmatch(r"/apis/kubeflow.org/v1/namespaces/([^/]+)/tfjobs/([^/]+)", path)
                if m and m.group(2) in api.jobs:
                    api.gets += 1
                    status = api.statuses[min(api.gets, len(api.statuses)) - 1]
                    return self._send(200, {**api.jobs[m.group(2)], "status": status})
                if re.fullmatch(r"/api/v1/namespaces/[^/]+/pods", path):
                    items = [
                        {"metadata": {"name": n}, "status": {"phase": "Running"}} for n in api.logs
                    ]
                    return self._send(
                        200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
                    )
                m = re.fullmatch(r"/api/v1/namespaces/[^/]+/pods/([^/]+)/log", path)
                if m:
                    return self._send(200, api.logs.get(m.group(1), ""), text=True)
                self._send(404, {"kind": "Status", "code": 404})
                return None

            def do_DELETE(self):
                m = re.fullmatch(
                    r"/apis/kubeflow.org/v1/namespaces/([^/]+)/tfjobs/([^/]+)",
                    self.path.split("?")[0],
                )
                if m and api.jobs.pop(m.group(2), None):
                    api.deleted.append(m.group(2))
                    return self._send(200, {"kind": "Status", "status": "Success"})
                self._send(404, {"kind": "Status", "code": 404})
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def client(self):
        cfg = k8s.Configuration()
        cfg.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        return TrainingClient(client_configuration=cfg, namespace="ml", job_kind="TFJob")

    def close(self):
        self.server.shutdown()


def cond(kind, reason="", message=""):
    return {"type": kind, "status": "True", "reason": reason, "message": message}


RUNNING = {
    "conditions": [cond("Created"), cond("Running")],
    "replicaStatuses": {"Chief": {"active": 1}, "Worker": {"active": 2}},
}


@pytest.fixture
def job():
    return tfjob.build_tfjob(make_config())


def test_launch_succeeds_and_streams_logs(job, capsys):
    api = FakeKubeApi(
        [
            RUNNING,
            RUNNING,
            {
                "conditions": [cond("Succeeded", "TFJobSucceeded")],
                "replicaStatuses": {"Chief": {"succeeded": 1}},
            },
        ],
        logs={"tfopt-train-1-chief-0": "Epoch 1/3\nEpoch 2/3\n"},
    )
    try:
        out = tfjob.launch_tfjob(job, client=api.client(), poll_s=0.05)
    finally:
        api.close()
    assert out.succeeded and out.replica_statuses["Chief"]["succeeded"] == 1
    assert api.deleted == []  # a finished job is left for its TTL, not deleted
    assert "[tfopt-train-1-chief-0] Epoch 2/3" in capsys.readouterr().out
    assert api.gets == 3


def test_failed_replica_surfaces_reason(job):
    failed = {
        "conditions": [
            cond("Created"),
            cond(
                "Failed",
                "TFJobFailed",
                "TFJob ml/tfopt-train-1 has failed because 1 Worker replica(s) failed.",
            ),
        ],
        "replicaStatuses": {"Chief": {"active": 1}, "Worker": {"failed": 1}},
    }
    api = FakeKubeApi(
        [RUNNING, failed], logs={"tfopt-train-1-worker-0": "step 1\nResourceExhaustedError: OOM\n"}
    )
    try:
        with pytest.raises(tfjob.LaunchError) as err:
            tfjob.launch_tfjob(job, client=api.client(), poll_s=0.05, stream_logs=False)
    finally:
        api.close()
    msg = str(err.value)
    assert "replica Worker failed; reason=TFJobFailed" in msg
    assert "1 Worker replica(s) failed" in msg and "ResourceExhaustedError: OOM" in msg


def test_timeout_deletes_job(job):
    api = FakeKubeApi([RUNNING])
    try:
        with pytest.raises(tfjob.LaunchError, match="did not finish within 1 s"):
            tfjob.launch_tfjob(job, client=api.client(), timeout_s=1, poll_s=0.1)
    finally:
        api.close()
    assert api.deleted == ["tfopt-train-1"]


def test_sigterm_cancels_and_deletes_job(job):
    api = FakeKubeApi([RUNNING])
    with callers_sigterm_handler() as callers:

        def polling_with_its_handler_in():
            return signal.getsignal(signal.SIGTERM) is not callers and api.gets >= 1

        try:
            with (
                sigterm_when(polling_with_its_handler_in, "the launcher polls its job") as sent,
                pytest.raises(tfjob.LaunchError, match="cancelled"),
            ):
                tfjob.launch_tfjob(job, client=api.client(), timeout_s=60, poll_s=0.05)
        finally:
            api.close()
        assert sent.is_set()
        assert signal.getsignal(signal.SIGTERM) is callers  # the caller's handler is back
    assert api.deleted == ["tfopt-train-1"]


def test_train_on_kubeflow_rejects_unshared_paths():
    req = validate.TrainingRequest("tfjob", 2, 0)
    with pytest.raises(ConfigError, match="minio://"):
        tfjob.train_on_kubeflow("minio://mlpipeline/ds", "gs://b/m", {}, req, "img")
