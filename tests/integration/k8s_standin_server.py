"""A local Kubernetes API stand-in for TrainJob and JobSet (HTTP REST on loopback).

It serves the REST paths the ``kubernetes`` client calls: create / get / list /
watch (``?watch=true``: newline-delimited JSON events, ``timeoutSeconds``) /
delete of ``trainjobs.trainer.kubeflow.org/v1alpha1`` and
``jobsets.jobset.x-k8s.io/v1alpha2``, and list / log of the job's pods.
Bodies are parsed with the ``kubeflow-trainer-api`` models (a malformed one is
rejected with 422, as the API server's CRD schema would). A controller thread
plays what Trainer / JobSet / Kueue write: pods labelled with the JobSet name
(``<job>-node-0-<i>-<suffix>``), ``Suspended`` while a queued job waits for
admission, then ``Complete`` (TrainJob) / ``Completed`` (JobSet) or ``Failed``
with the controllers' reasons. ``scenario`` picks the outcome: ``succeed``,
``fail`` (pod 1 fails with a traceback) or ``hang`` (runs until deleted).
Every request is recorded in ``calls``.
"""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time
import urllib.parse

from kubeflow_trainer_api import models as ktm
from pydantic import ValidationError

KINDS = {
    ("trainer.kubeflow.org", "v1alpha1", "trainjobs"): ("TrainJob", ktm.TrainerV1alpha1TrainJob),
    ("jobset.x-k8s.io", "v1alpha2", "jobsets"): ("JobSet", ktm.JobsetV1alpha2JobSet),
}
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _cond(ctype: str, status: str, reason: str, message: str) -> dict:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": _now(),
    }


class K8sStandIn:
    """``start()`` returns self; ``url`` is the API server address for ``Configuration.host``."""

    def __init__(self, scenario: str = "succeed", run_s: float = 0.3, admit_s: float = 0.2):
        self.scenario, self.run_s, self.admit_s = scenario, run_s, admit_s
        self.objects: dict[tuple, dict] = {}  # (plural, ns, name) -> object
        self.pods: dict[tuple, dict] = {}  # (ns, pod) -> {"pod": ..., "log": ...}
        self.calls: list[tuple] = []  # (verb, path, monotonic time)
        self.changed = threading.Condition()
        self._rv = 0
        self.fail_watches = 0  # answer this many watch requests with 500 (API server trouble)
        self._deleted: dict | None = None  # last deleted object (watch DELETED event)
        self._stop = threading.Event()
        handler = type("Handler", (_Handler,), {"standin": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> K8sStandIn:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with self.changed:
            self.changed.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    def api_client(self):
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    # ------------------------------------------------------------------ state

    def _bump(self, obj: dict) -> None:
        """Record a change (new resourceVersion) and wake the watchers; hold ``changed``."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self.changed.notify_all()

    def set_conditions(self, key: tuple, *conds: dict) -> None:
        with self.changed:
            obj = self.objects.get(key)
            if obj is None:
                return
            status = obj.setdefault("status", {})
            old = {c["type"]: c for c in status.get("conditions", [])}
            old.update({c["type"]: c for c in conds})
            status["conditions"] = list(old.values())
            self._bump(obj)

    def _add_pods(self, kind: str, ns: str, name: str, n: int) -> list[str]:
        names = []
        with self.changed:
            for i in range(n):
                pod = f"{name}-node-0-{i}-{secrets.token_hex(3)[:5]}"
                self.pods[(ns, pod)] = {
                    "pod": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {
                            "name": pod,
                            "namespace": ns,
                            "labels": {
                                JOBSET_LABEL: name,
                                "batch.kubernetes.io/job-completion-index": str(i),
                            },
                        },
                        "status": {"phase": "Running"},
                    },
                    "log": "".join(f"worker {i}: epoch {e} step {e * 10}\n" for e in range(1, 40)),
                }
                names.append(pod)
        return names

    def _pod_phase(self, ns: str, pod: str, phase: str, extra_log: str = "") -> None:
        with self.changed:
            entry = self.pods[(ns, pod)]
            entry["pod"]["status"]["phase"] = phase
            entry["log"] += extra_log

    def _controller(self, plural: str, ns: str, name: str, body: dict) -> None:
        key = (plural, ns, name)
        kind = KINDS_BY_PLURAL[plural]
        labels = body["metadata"].get("labels") or {}
        if QUEUE_LABEL in labels:  # Kueue: suspended until the queue admits it
            self.set_conditions(key, _cond("Suspended", "True", "Suspended", "waiting for quota"))
            time.sleep(self.admit_s)
            self.set_conditions(key, _cond("Suspended", "False", "Resumed", "admitted by Kueue"))
        if kind == "TrainJob":
            n = body["spec"]["trainer"]["numNodes"]
        else:
            n = body["spec"]["replicatedJobs"][0]["template"]["spec"]["parallelism"]
        pods = self._add_pods(kind, ns, name, n)
        with self.changed:  # the child Job is active, as the controllers report it
            obj = self.objects.get(key)
            if obj is None:
                return
            field = "jobsStatus" if kind == "TrainJob" else "replicatedJobsStatus"
            obj["status"][field] = [
                {
                    "name": "node",
                    "active": 1,
                    "ready": 1,
                    "succeeded": 0,
                    "failed": 0,
                    "suspended": 0,
                }
            ]
            self._bump(obj)
        deadline = time.monotonic() + self.run_s
        while self.scenario == "hang" or time.monotonic() < deadline:
            if self._stop.wait(0.05) or key not in self.objects:
                return
        done = "Complete" if kind == "TrainJob" else "Completed"
        if self.scenario == "succeed":
            for p in pods:
                self._pod_phase(ns, p, "Succeeded", "done\n")
            reason = "JobSetCompleted" if kind == "TrainJob" else "AllJobsCompleted"
            self.set_conditions(key, _cond(done, "True", reason, "jobset completed successfully"))
        else:
            self._pod_phase(
                ns,
                pods[-1],
                "Failed",
                "Traceback (most recent call last):\n"
                '  File "train.py", line 1, in <module>\n'
                "ValueError: loss is NaN at step 400\n",
            )
            msg = "jobset failed due to one or more job failures"
            reason = "JobSetFailed" if kind == "TrainJob" else "FailedJobs"
            self.set_conditions(key, _cond("Failed", "True", reason, msg))

    def created(self, plural: str) -> list[dict]:
        return [o for (p, _, _), o in self.objects.items() if p == plural]


KINDS_BY_PLURAL = {plural: kind for (_, _, plural), (kind, _) in KINDS.items()}


class _Handler(http.server.BaseHTTPRequestHandler):
    standin: K8sStandIn
    protocol_version = "HTTP/1.1"  # watch events go out as chunks, as the API server sends them

    def log_message(self, *args):  # quiet
        pass

    def _send(self, code: int, body: dict | str, ctype: str = "application/json") -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")  # one request per connection: simple, safe
        self.end_headers()
        self.close_connection = True
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": reason,
                "message": message,
                "code": code,
            },
        )

    def _route(self):
        url = urllib.parse.urlparse(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        self.standin.calls.append((self.command, url.path, time.monotonic()))
        return parts, query

    def _custom(self, parts):
        # apis/<group>/<version>/namespaces/<ns>/<plural>[/<name>]
        if len(parts) < 6 or parts[0] != "apis" or parts[3] != "namespaces":
            return None
        group, version, ns, plural = parts[1], parts[2], parts[4], parts[5]
        if (group, version, plural) not in KINDS:
            return None
        return (group, version, plural), ns, (parts[6] if len(parts) > 6 else None)

    def do_POST(self):
        parts, _ = self._route()
        target = self._custom(parts)
        if target is None:
            return self._status(404, "NotFound", f"no such resource {self.path}")
        gvp, ns, _ = target
        kind, model = KINDS[gvp]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        try:
            model.from_dict(body)
        except ValidationError as exc:
            return self._status(422, "Invalid", f"{kind} is invalid: {exc}")
        if body.get("kind") != kind or body["metadata"].get("namespace", ns) != ns:
            return self._status(400, "BadRequest", "kind or namespace does not match the path")
        name = body["metadata"]["name"]
        key = (gvp[2], ns, name)
        st = self.standin
        with st.changed:
            if key in st.objects:
                return self._status(409, "AlreadyExists", f'{kind} "{name}" already exists')
            body["metadata"].update(uid=secrets.token_hex(8), creationTimestamp=_now())
            body["status"] = {}
            st.objects[key] = body
            st._bump(body)
            snapshot = json.loads(json.dumps(body))
        threading.Thread(target=st._controller, args=(*key, snapshot), daemon=True).start()
        self._send(201, snapshot)
        return None

    def do_DELETE(self):
        parts, _ = self._route()
        target = self._custom(parts)
        if target is None or target[2] is None:
            return self._status(404, "NotFound", self.path)
        gvp, ns, name = target
        st = self.standin
        with st.changed:
            obj = st.objects.pop((gvp[2], ns, name), None)
            if obj is None:
                return self._status(404, "NotFound", f'"{name}" not found')
            for key in [
                k
                for k, v in st.pods.items()
                if v["pod"]["metadata"]["labels"].get(JOBSET_LABEL) == name
            ]:
                del st.pods[key]
            st._deleted = obj
            st._rv += 1
            st.changed.notify_all()
        self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
        return None

    def do_GET(self):
        parts, query = self._route()
        st = self.standin
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) >= 5 and parts[4] == "pods":
            return self._pods(parts[3], parts[5:], query)
        target = self._custom(parts)
        if target is None:
            return self._status(404, "NotFound", self.path)
        gvp, ns, name = target
        if name is not None:
            with st.changed:
                obj = st.objects.get((gvp[2], ns, name))
                snap = json.loads(json.dumps(obj)) if obj else None
            if snap is None:
                return self._status(404, "NotFound", f'"{name}" not found')
            return self._send(200, snap)
        want = query.get("fieldSelector", "").removeprefix("metadata.name=") or None
        if query.get("watch", "").lower() in ("true", "1"):
            if st.fail_watches > 0:
                st.fail_watches -= 1
                return self._status(500, "InternalError", "etcdserver: request timed out")
            return self._watch(gvp[2], ns, want, float(query.get("timeoutSeconds", 30)))
        with st.changed:
            items = [
                json.loads(json.dumps(o))
                for (p, n, nm), o in st.objects.items()
                if p == gvp[2] and n == ns and want in (None, nm)
            ]
        self._send(200, {"apiVersion": "/".join(gvp[:2]), "kind": "List", "items": items})
        return None

    def _watch(self, plural: str, ns: str, name: str | None, timeout: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        end = time.monotonic() + timeout
        try:
            self._stream_events(plural, ns, name, end)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client went away (watch stopped)
            pass

    def _stream_events(self, plural: str, ns: str, name: str | None, end: float) -> None:
        st = self.standin
        sent: dict[str, str] = {}  # name -> resourceVersion already sent
        while not st._stop.is_set():
            with st.changed:
                current = {
                    nm: json.loads(json.dumps(o))
                    for (p, n, nm), o in st.objects.items()
                    if p == plural and n == ns and name in (None, nm)
                }
                events = []
                for nm, obj in current.items():
                    rv = obj["metadata"]["resourceVersion"]
                    if sent.get(nm) != rv:
                        events.append(
                            {"type": "MODIFIED" if nm in sent else "ADDED", "object": obj}
                        )
                        sent[nm] = rv
                for nm in [nm for nm in sent if nm not in current]:
                    events.append({"type": "DELETED", "object": st._deleted})
                    del sent[nm]
                if not events:
                    left = end - time.monotonic()
                    if left <= 0:
                        return
                    st.changed.wait(min(left, 0.5))
                    continue
            for ev in events:
                data = (json.dumps(ev) + "\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _pods(self, ns: str, rest: list[str], query: dict) -> None:
        st = self.standin
        with st.changed:
            if not rest:
                key, _, value = query.get("labelSelector", "").partition("=")
                items = [
                    json.loads(json.dumps(v["pod"]))
                    for (n, _), v in sorted(st.pods.items())
                    if n == ns and (not key or v["pod"]["metadata"]["labels"].get(key) == value)
                ]
                return self._send(200, {"apiVersion": "v1", "kind": "PodList", "items": items})
            entry = st.pods.get((ns, rest[0]))
        if entry is None:
            return self._status(404, "NotFound", f'pods "{rest[0]}" not found')
        if rest[1:] == ["log"]:
            lines = entry["log"].splitlines(keepends=True)
            tail = int(query.get("tailLines", len(lines)))
            return self._send(200, "".join(lines[-tail:]), "text/plain")
        return self._send(200, entry["pod"])
