"""A local stand-in of the Kubeflow Model Registry's REST API (HTTP on loopback).

Paths, parameters and bodies are those of the OpenAPI the ``model-registry`` client is
generated from (``mr_openapi``, ``/api/model_registry/v1``): list, find, create and get of
registered models, model versions and model artifacts. Request bodies are parsed with
``mr_openapi``'s own ``*Create`` models (400 on a body they reject), answers carry the
server's fields (``id``, ``createTimeSinceEpoch`` ...). Every request needs
``Authorization: Bearer <token>`` (401 otherwise, 403 for ``forbidden`` tokens), as the
registry behind Kubeflow's auth proxy answers. ``calls`` records (method, path, query).
"""

from __future__ import annotations

import http.server
import itertools
import json
import threading
import time
import urllib.parse

from mr_openapi import models as mro

BASE = "/api/model_registry/v1"


class RegistryStandIn:
    def __init__(self, token: str = "good-token", forbidden: tuple[str, ...] = ()):
        self.token, self.forbidden = token, forbidden
        self.models: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.artifacts: dict[str, dict] = {}
        self.version_artifacts: dict[str, list[str]] = {}
        self.calls: list[tuple[str, str, dict]] = []
        self._ids = itertools.count(1)
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"standin": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> RegistryStandIn:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def new(self, body: dict) -> dict:
        now = str(int(time.time() * 1000))
        return {
            **body,
            "id": str(next(self._ids)),
            "createTimeSinceEpoch": now,
            "lastUpdateTimeSinceEpoch": now,
        }


def _page(items: list[dict]) -> dict:
    return {"items": items, "size": len(items), "pageSize": max(len(items), 1), "nextPageToken": ""}


class _Handler(http.server.BaseHTTPRequestHandler):
    standin: RegistryStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, code: int, message: str) -> None:
        self._send(code, {"code": str(code), "message": message})

    def _route(self):
        url = urllib.parse.urlparse(self.path)
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
        self.standin.calls.append((self.command, url.path, query))
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        if token in self.standin.forbidden:
            self._error(403, f"RBAC: access denied for token {token[:4]}...")
            return None
        if token != self.standin.token:
            self._error(401, "Unauthorized: a valid bearer token is required")
            return None
        if not url.path.startswith(BASE + "/"):
            self._error(404, f"no route {url.path}")
            return None
        return url.path[len(BASE) + 1 :].split("/"), query

    def _body(self, model_cls) -> dict | None:
        raw = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        try:
            model_cls.from_dict(raw)
        except Exception as exc:
            self._error(400, f"invalid {model_cls.__name__}: {exc}")
            return None
        return raw

    def do_GET(self):
        routed = self._route()
        if routed is None:
            return None
        parts, q = routed
        st = self.standin
        with st.lock:
            if parts == ["registered_models"]:
                return self._send(200, _page(list(st.models.values())))
            if parts == ["registered_model"]:
                found = [m for m in st.models.values() if m["name"] == q.get("name")]
                if not found:
                    return self._error(404, f"no registered model {q.get('name')!r}")
                return self._send(200, found[0])
            if parts[0] == "registered_models" and len(parts) == 2:
                m = st.models.get(parts[1])
                return self._send(200, m) if m else self._error(404, "not found")
            if parts[0] == "registered_models" and parts[2:] == ["versions"]:
                items = [v for v in st.versions.values() if v["registeredModelId"] == parts[1]]
                return self._send(200, _page(items))
            if parts == ["model_version"]:
                found = [
                    v
                    for v in st.versions.values()
                    if v["name"] == q.get("name")
                    and v["registeredModelId"] == q.get("parentResourceId")
                ]
                if not found:
                    return self._error(404, f"no model version {q.get('name')!r}")
                return self._send(200, found[0])
            if parts[0] == "model_versions" and len(parts) == 2:
                v = st.versions.get(parts[1])
                return self._send(200, v) if v else self._error(404, "not found")
            if parts[0] == "model_versions" and parts[2:] == ["artifacts"]:
                ids = st.version_artifacts.get(parts[1], [])
                return self._send(200, _page([st.artifacts[i] for i in ids]))
            if parts == ["model_artifact"]:
                found = [
                    st.artifacts[i]
                    for i in st.version_artifacts.get(q.get("parentResourceId", ""), [])
                    if st.artifacts[i]["name"] == q.get("name")
                ]
                return self._send(200, found[0]) if found else self._error(404, "not found")
        return self._error(404, f"no route {self.path}")

    def do_POST(self):
        routed = self._route()
        if routed is None:
            return None
        parts, _ = routed
        st = self.standin
        if parts == ["registered_models"]:
            body = self._body(mro.RegisteredModelCreate)
            if body is None:
                return None
            with st.lock:
                if any(m["name"] == body["name"] for m in st.models.values()):
                    return self._error(409, f"registered model {body['name']!r} exists")
                m = st.new({"state": "LIVE", **body})
                st.models[m["id"]] = m
            return self._send(201, m)
        if parts == ["model_versions"] or (
            parts[0] == "registered_models" and parts[2:] == ["versions"]
        ):
            body = self._body(mro.ModelVersionCreate)
            if body is None:
                return None
            with st.lock:
                rm = body.get("registeredModelId") or parts[1]
                if rm not in st.models:
                    return self._error(404, f"no registered model {rm}")
                if any(
                    v["name"] == body["name"] and v["registeredModelId"] == rm
                    for v in st.versions.values()
                ):
                    return self._error(409, f"version {body['name']!r} exists")
                v = st.new({"state": "LIVE", **body, "registeredModelId": rm})
                st.versions[v["id"]] = v
            return self._send(201, v)
        if parts[0] == "model_versions" and parts[2:] == ["artifacts"]:
            body = self._body(mro.Artifact)
            if body is None:
                return None
            with st.lock:
                if parts[1] not in st.versions:
                    return self._error(404, f"no model version {parts[1]}")
                a = st.new({"state": "LIVE", **body})
                st.artifacts[a["id"]] = a
                st.version_artifacts.setdefault(parts[1], []).append(a["id"])
            return self._send(200, a)
        return self._error(404, f"no route {self.path}")
