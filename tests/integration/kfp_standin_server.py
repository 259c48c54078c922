"""A local Kubeflow Pipelines API stand-in speaking the v2beta1 REST API.

Request bodies are parsed into, and responses built from, the
``kfp_server_api`` models that ``kfp.Client`` itself uses, so what is
recorded in ``calls`` is exactly what the client sent.
"""

from __future__ import annotations

import http.server
import json
import threading
import urllib.parse
import uuid

import kfp_server_api

_API = kfp_server_api.ApiClient()


class _Body:
    def __init__(self, data: bytes):
        self.data = data


def _parse(data: bytes, model: str):
    return _API.deserialize(_Body(data), model)


class KfpStandIn:
    """``http://127.0.0.1:PORT`` answering the calls kfp.Client makes for runs and schedules."""

    def __init__(self):
        self.calls: list[tuple[str, str, object]] = []  # (method, path, parsed body or query)
        self.experiments: dict[str, kfp_server_api.V2beta1Experiment] = {}
        self.runs: dict[str, kfp_server_api.V2beta1Run] = {}
        self.recurring: dict[str, kfp_server_api.V2beta1RecurringRun] = {}
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, status: int, obj=None):
                body = json.dumps(
                    _API.sanitize_for_serialization(obj) if obj is not None else {}
                ).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _route(self, verb):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                status, obj = outer.handle(verb, url.path, query, data)
                self._send(status, obj)

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_DELETE(self):
                self._route("DELETE")

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def paths(self) -> list[str]:
        return [f"{verb} {path}" for verb, path, _ in self.calls]

    def bodies(self, verb: str, path: str) -> list:
        return [b for v, p, b in self.calls if v == verb and p == path]

    def handle(self, verb: str, path: str, query: dict, data: bytes):
        base = "/apis/v2beta1/"
        if not path.startswith(base):
            return 404, None
        res = path[len(base) :]
        if verb == "GET" and res == "healthz":
            self.calls.append((verb, path, query))
            return 200, kfp_server_api.V2beta1GetHealthzResponse(multi_user=False)
        if res == "experiments":
            if verb == "GET":
                self.calls.append((verb, path, query))
                wanted = None
                if query.get("filter"):
                    preds = json.loads(query["filter"])["predicates"]
                    wanted = {p["stringValue"] for p in preds if p["key"] == "display_name"}
                found = [
                    e
                    for e in self.experiments.values()
                    if wanted is None or e.display_name in wanted
                ]
                return 200, kfp_server_api.V2beta1ListExperimentsResponse(
                    experiments=found or None, total_size=len(found)
                )
            exp = _parse(data, "V2beta1Experiment")
            self.calls.append((verb, path, exp))
            exp.experiment_id = str(uuid.uuid4())
            self.experiments[exp.experiment_id] = exp
            return 200, exp
        if res == "runs" and verb == "POST":
            run = _parse(data, "V2beta1Run")
            self.calls.append((verb, path, run))
            if run.experiment_id not in self.experiments:
                return 400, None
            run.run_id = str(uuid.uuid4())
            run.state = "PENDING"
            self.runs[run.run_id] = run
            return 200, run
        if res == "recurringruns":
            if verb == "POST":
                rr = _parse(data, "V2beta1RecurringRun")
                self.calls.append((verb, path, rr))
                if rr.experiment_id not in self.experiments:
                    return 400, None
                rr.recurring_run_id = str(uuid.uuid4())
                rr.status = "ENABLED"
                self.recurring[rr.recurring_run_id] = rr
                return 200, rr
            self.calls.append((verb, path, query))
            found = list(self.recurring.values())
            return 200, kfp_server_api.V2beta1ListRecurringRunsResponse(
                recurring_runs=found or None, total_size=len(found)
            )
        if res.startswith("recurringruns/") and verb == "DELETE":
            rid = res.split("/", 1)[1]
            self.calls.append((verb, path, None))
            if self.recurring.pop(rid, None) is None:
                return 404, None
            return 200, None
        return 404, None
