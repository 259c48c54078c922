"""A local Kubernetes API stand-in for KServe InferenceServices (HTTP REST on loopback).

It serves what the ``kubernetes`` client's ``CustomObjectsApi`` calls on
``inferenceservices.serving.kserve.io/v1beta1``: create, get, replace (``resourceVersion``
checked: 409 on a stale one), JSON merge patch and delete. Bodies are checked against
the CRD schema subset tfopt vendors (422, as the API server's structural schema would).
A controller thread plays KServe + Knative Serving (``ksvc_reconciler.go`` and
``PropagateStatus`` in ``inference_service_status.go``):

- a change of the predictor template (anything but ``canaryTrafficPercent``) makes a
  revision ``<name>-predictor-0000N``; its "pod" copies ``storageUri`` (the storage
  initializer: a snapshot, mapped to a local folder by ``storage``) to its own ``/mnt/models``
  and runs tfopt's local TF Serving server with the container's ``--model_config_file``;
  it is ready once the pinned version is AVAILABLE;
- traffic: with ``canaryTrafficPercent`` and a rolled-out revision, the latest ready
  revision gets that share (tag ``latest``) and the rolled-out one the rest (tag ``prev``);
  without it the latest ready revision gets 100%. A revision that reaches 100% becomes
  ``latestRolledoutRevision``;
- status: ``observedGeneration``, conditions (``PredictorReady``, ``Ready``),
  ``components.predictor`` (revisions, traffic with each revision's own URL), ``url``
  (an ingress on the same port that splits ``/v1/models/<name>...`` by the traffic).

``hang_next = True`` makes the next revision never ready (a pod that cannot schedule).
Every request is recorded in ``calls``.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import random
import secrets
import shutil
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from tfopt.deploy.kserve import schema
from tfopt.deploy.serving import config as sc
from tfopt.deploy.serving import server as serving_server

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MOUNT = "/mnt/models"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def _template(obj: dict) -> str:
    pred = copy.deepcopy(obj["spec"]["predictor"])
    pred.pop("canaryTrafficPercent", None)
    return json.dumps(pred, sort_keys=True)


class _Revision:
    def __init__(self, name: str, template: str):
        self.name, self.template = name, template
        self.ready = False
        self.failure = ""
        self.server: serving_server.ModelServer | None = None
        self.dir = tempfile.mkdtemp(prefix=f"standin-{name}-")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.rest_port}" if self.server else ""

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class KServeStandIn:
    """``start()`` returns self; ``url`` is the API server address for ``Configuration.host``."""

    def __init__(self, storage: dict[str, str]):
        self.storage = storage  # cluster URI prefix -> local folder
        self.objects: dict[tuple[str, str], dict] = {}
        self.revisions: dict[tuple[str, str], list[_Revision]] = {}
        self.rolled_out: dict[tuple[str, str], str] = {}
        self.previous: dict[tuple[str, str], str] = {}
        self.calls: list[tuple[str, str]] = []
        self.bodies: list[tuple[str, dict]] = []  # (verb, body) of every write
        self.hang_next = False
        self.lock = threading.RLock()
        self._rv = 0
        handler = type("Handler", (_Handler,), {"standin": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> KServeStandIn:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            for revs in self.revisions.values():
                for r in revs:
                    r.stop()

    def api_client(self):
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    # ------------------------------------------------------------ controller

    def _bump(self, obj: dict) -> None:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)

    def write(self, key: tuple[str, str], obj: dict, spec_changed: bool) -> dict:
        """Store ``obj`` (lock held) and reconcile it in the background."""
        if spec_changed:
            obj["metadata"]["generation"] = int(obj["metadata"].get("generation") or 0) + 1
        self._bump(obj)
        self.objects[key] = obj
        threading.Thread(target=self._reconcile, args=(key,), daemon=True).start()
        return copy.deepcopy(obj)

    def _reconcile(self, key: tuple[str, str]) -> None:
        with self.lock:
            obj = self.objects.get(key)
            if obj is None:
                return
            revs = self.revisions.setdefault(key, [])
            template = _template(obj)
            if not revs or revs[-1].template != template:
                rev = _Revision(f"{key[1]}-predictor-{len(revs) + 1:05d}", template)
                revs.append(rev)
                hang, self.hang_next = self.hang_next, False
                if not hang:
                    threading.Thread(
                        target=self._start_pod, args=(key, rev, obj), daemon=True
                    ).start()
            self._status(key)

    def _start_pod(self, key: tuple[str, str], rev: _Revision, obj: dict) -> None:
        """The storage initializer, then TF Serving with the container's arguments."""
        model = obj["spec"]["predictor"]["model"]
        try:
            uri = model["storageUri"]
            prefix = next((p for p in self.storage if uri.startswith(p)), None)
            if prefix is None:
                raise RuntimeError(f"storage-initializer: cannot download {uri}")
            mnt = os.path.join(rev.dir, "mnt")
            shutil.copytree(self.storage[prefix] + uri[len(prefix) :], mnt)
            args = dict(a.lstrip("-").split("=", 1) for a in model.get("args", []))
            config_file = args["model_config_file"].replace(MOUNT, mnt)
            entries = [
                sc.ModelEntry(e.name, e.base_path.replace(MOUNT, mnt), e.policy, e.num_versions,
                              e.versions, e.labels)
                for e in sc.read_model_config(config_file)
            ]  # fmt: skip
            local_config = sc.write_model_config(os.path.join(rev.dir, "models.config"), entries)
            srv = serving_server.ModelServer(mnt, [], config_file=local_config, poll_seconds=60)
            rev.server = srv.start()
            for e in entries:
                serving_server.wait_available(srv, e.name, max(e.versions or (None,)), 60)
            rev.ready = True
        except Exception as exc:
            rev.failure = f"{type(exc).__name__}: {exc}"
        with self.lock:
            self._status(key)

    def _status(self, key: tuple[str, str]) -> None:
        """KServe's status from the revisions and the spec (lock held)."""
        obj = self.objects.get(key)
        if obj is None:
            return
        revs = self.revisions[key]
        latest = revs[-1]
        ready = [r for r in revs if r.ready]
        latest_ready = ready[-1] if ready else None
        canary = obj["spec"]["predictor"].get("canaryTrafficPercent")
        rolled = self.rolled_out.get(key, "")
        by_name = {r.name: r for r in revs}
        traffic = []
        if latest_ready is not None:
            if canary is not None and rolled:
                traffic.append(self._target("latest", latest_ready, canary, True))
                if canary < 100:
                    traffic.append(self._target("prev", by_name[rolled], 100 - canary, False))
            else:
                traffic.append(self._target("latest", latest_ready, 100, True))
            for t in traffic:  # PropagateStatus: a revision at 100% is rolled out
                if t["latestRevision"] and t["percent"] == 100 and rolled != t["revisionName"]:
                    self.previous[key], self.rolled_out[key] = rolled, t["revisionName"]
        ok = latest.ready
        if ok:
            cond = {"type": "PredictorReady", "status": "True"}
        elif latest.failure:
            cond = {
                "type": "PredictorReady",
                "status": "False",
                "reason": "RevisionFailed",
                "message": f'Revision "{latest.name}" failed with message: {latest.failure}.',
            }
        else:  # a pod that cannot be scheduled (or is still starting)
            cond = {
                "type": "PredictorReady",
                "status": "False",
                "reason": "RevisionMissing",
                "message": f'Revision "{latest.name}" is not ready: 0/3 nodes are available: '
                "3 Insufficient nvidia.com/gpu.",
            }
        conds = [dict(cond, lastTransitionTime=_now())]
        conds.append(dict(cond, type="Ready", lastTransitionTime=_now()))
        status = obj.setdefault("status", {})
        status.update(
            observedGeneration=obj["metadata"]["generation"],
            url=self.url if traffic else "",
            address={"url": self.url},
            conditions=conds,
            modelStatus={
                "transitionStatus": "UpToDate" if ok else "InProgress",
                "states": {"activeModelState": "Loaded" if latest_ready else "Pending"},
            },
            components={
                "predictor": {
                    "latestCreatedRevision": latest.name,
                    "latestReadyRevision": latest_ready.name if latest_ready else "",
                    "latestRolledoutRevision": self.rolled_out.get(key, ""),
                    "previousRolledoutRevision": self.previous.get(key, ""),
                    "traffic": traffic,
                    "url": self.url if traffic else "",
                }
            },
        )
        self._bump(obj)

    @staticmethod
    def _target(tag: str, rev: _Revision, percent: int, latest: bool) -> dict:
        return {
            "tag": tag,
            "revisionName": rev.name,
            "configurationName": rev.name.rsplit("-", 1)[0],
            "percent": percent,
            "latestRevision": latest,
            "url": rev.url,
        }

    def route(self, name: str) -> str:
        """The URL of a revision picked by the traffic split (the ingress)."""
        with self.lock:
            for (_ns, n), obj in self.objects.items():
                if n == name:
                    pred = (obj.get("status") or {}).get("components", {}).get("predictor", {})
                    traffic = pred.get("traffic") or []
                    pick = random.uniform(0, 100)
                    for t in traffic:
                        pick -= t["percent"]
                        if pick <= 0:
                            return t["url"]
        return ""

    def traffic(self, name: str, ns: str = "default") -> dict[str, int]:
        with self.lock:
            obj = self.objects[(ns, name)]
            return {
                t["revisionName"]: t["percent"]
                for t in obj["status"]["components"]["predictor"]["traffic"]
            }


class _Handler(http.server.BaseHTTPRequestHandler):
    standin: KServeStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: dict | bytes) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
             "message": message, "code": code},
        )  # fmt: skip

    def _target(self):
        path = urllib.parse.urlparse(self.path).path
        self.standin.calls.append((self.command, path))
        parts = path.strip("/").split("/")
        if parts[:3] != ["apis", GROUP, VERSION] or len(parts) < 6 or parts[5] != PLURAL:
            return None
        return parts[4], (parts[6] if len(parts) > 6 else None)

    def _body(self) -> dict:
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

    def _invalid(self, body: dict) -> bool:
        problems = schema.errors(body)
        if problems:
            self._status(422, "Invalid", "InferenceService is invalid: " + "; ".join(problems))
        return bool(problems)

    def do_POST(self):
        target = self._target()
        if target is None:
            return self._proxy()
        ns, _ = target
        body = self._body()
        st = self.standin
        st.bodies.append(("POST", copy.deepcopy(body)))
        if self._invalid(body):
            return None
        key = (ns, body["metadata"]["name"])
        with st.lock:
            if key in st.objects:
                return self._status(409, "AlreadyExists", f'"{key[1]}" already exists')
            body["metadata"].update(uid=secrets.token_hex(8), creationTimestamp=_now())
            body.pop("status", None)
            return self._send(201, st.write(key, body, spec_changed=True))

    def do_PUT(self):
        ns, name = self._target() or (None, None)
        body = self._body()
        st = self.standin
        st.bodies.append(("PUT", copy.deepcopy(body)))
        if self._invalid(body):
            return None
        with st.lock:
            live = st.objects.get((ns, name))
            if live is None:
                return self._status(404, "NotFound", f'"{name}" not found')
            if body["metadata"].get("resourceVersion") != live["metadata"]["resourceVersion"]:
                return self._status(409, "Conflict", "the object has been modified")
            changed = body["spec"] != live["spec"]
            body["metadata"]["generation"] = live["metadata"]["generation"]
            body["status"] = live.get("status", {})
            return self._send(200, st.write((ns, name), body, spec_changed=changed))

    def do_PATCH(self):
        ns, name = self._target() or (None, None)
        patch = self._body()
        st = self.standin
        st.bodies.append(("PATCH", copy.deepcopy(patch)))
        with st.lock:
            live = st.objects.get((ns, name))
            if live is None:
                return self._status(404, "NotFound", f'"{name}" not found')
            new = merge_patch(live, patch)
            if self._invalid({k: v for k, v in new.items() if k != "status"}):
                return None
            return self._send(200, st.write((ns, name), new, new["spec"] != live["spec"]))

    def do_DELETE(self):
        ns, name = self._target() or (None, None)
        st = self.standin
        with st.lock:
            if st.objects.pop((ns, name), None) is None:
                return self._status(404, "NotFound", f'"{name}" not found')
            for rev in st.revisions.pop((ns, name), []):
                rev.stop()
            st.rolled_out.pop((ns, name), None)
        return self._send(200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def do_GET(self):
        target = self._target()
        if target is None:
            return self._proxy()
        ns, name = target
        with self.standin.lock:
            obj = self.standin.objects.get((ns, name))
            snap = copy.deepcopy(obj) if obj else None
        if snap is None:
            return self._status(404, "NotFound", f'inferenceservices "{name}" not found')
        return self._send(200, snap)

    def _proxy(self):
        """The ingress: ``/v1/models/<name>...`` to a revision picked by the traffic split."""
        path = urllib.parse.urlparse(self.path).path
        name = path.split("/")[3].split(":")[0] if path.startswith("/v1/models/") else ""
        url = self.standin.route(name)
        if not url:
            return self._status(404, "NotFound", f"no route for {path}")
        data = self.rfile.read(int(self.headers.get("Content-Length", 0))) or None
        req = urllib.request.Request(url + self.path, data=data, method=self.command)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return self._send(resp.status, resp.read())
        except urllib.error.HTTPError as exc:
            return self._send(exc.code, exc.read())
