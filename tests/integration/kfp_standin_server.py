"""A local Kubeflow Pipelines API stand-in speaking the v2beta1 REST API.

Request bodies are parsed into, and responses built from, the
``kfp_server_api`` models that ``kfp.Client`` itself uses, so what is
recorded in ``calls`` is exactly what the client sent. Besides experiments, runs and
recurring runs it keeps pipelines and their versions: create, upload (multipart
``uploadfile``, as the server's ``pipelines/upload`` and ``pipelines/upload_version``), list
with a ``display_name`` filter, newest first with ``sort_by=created_at desc``; a run or
recurring run naming a version that does not exist is refused as the server does.
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import http.server
import json
import threading
import urllib.parse
import uuid

import kfp_server_api
import yaml

_API = kfp_server_api.ApiClient()


class _Body:
    def __init__(self, data: bytes):
        self.data = data


def _parse(data: bytes, model: str):
    return _API.deserialize(_Body(data), model)


def _uploaded(ctype: str, body: bytes) -> bytes:
    """The ``uploadfile`` part of a multipart upload."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "uploadfile":
            return part.get_payload(decode=True)
    return b""


def _name_filter(query: dict) -> str | None:
    if not query.get("filter"):
        return None
    preds = json.loads(query["filter"])["predicates"]
    return next((p["stringValue"] for p in preds if p["key"] == "display_name"), None)


class KfpStandIn:
    """``http://127.0.0.1:PORT`` answering the calls kfp.Client makes for runs and schedules."""

    def __init__(self):
        self.calls: list[tuple[str, str, object]] = []  # (method, path, parsed body or query)
        self.experiments: dict[str, kfp_server_api.V2beta1Experiment] = {}
        self.runs: dict[str, kfp_server_api.V2beta1Run] = {}
        self.recurring: dict[str, kfp_server_api.V2beta1RecurringRun] = {}
        self.pipelines: dict[str, kfp_server_api.V2beta1Pipeline] = {}
        self.versions: dict[str, kfp_server_api.V2beta1PipelineVersion] = {}
        # called with (run, how many times it was read) before each GET of a run: a test
        # moves the run along (state, task details) as a cluster would
        self.on_get_run = None
        self._reads: dict[str, int] = {}
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
                if self.headers.get("Content-Type", "").startswith("multipart/form-data"):
                    data = _uploaded(self.headers["Content-Type"], data)
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
        if res == "pipelines" or res.startswith("pipelines/"):
            return self._pipelines(verb, path, res, query, data)
        if res == "runs" and verb == "POST":
            run = _parse(data, "V2beta1Run")
            self.calls.append((verb, path, run))
            if run.experiment_id not in self.experiments or not self._known_version(run):
                return 400, None
            run.run_id = str(uuid.uuid4())
            run.state = "PENDING"
            self.runs[run.run_id] = run
            return 200, run
        if res == "recurringruns":
            if verb == "POST":
                rr = _parse(data, "V2beta1RecurringRun")
                self.calls.append((verb, path, rr))
                if rr.experiment_id not in self.experiments or not self._known_version(rr):
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
        if res.startswith("runs/") and verb == "GET":
            rid = res.split("/", 1)[1]
            self.calls.append((verb, path, query))
            if rid not in self.runs:
                return 404, None
            self._reads[rid] = self._reads.get(rid, 0) + 1
            if self.on_get_run is not None:
                self.on_get_run(self.runs[rid], self._reads[rid])
            return 200, self.runs[rid]
        if res.startswith("recurringruns/") and verb == "DELETE":
            rid = res.split("/", 1)[1]
            self.calls.append((verb, path, None))
            if self.recurring.pop(rid, None) is None:
                return 404, None
            return 200, None
        return 404, None

    # ------------------------------------------------------------ pipelines and versions
    def _known_version(self, run) -> bool:
        ref = run.pipeline_version_reference
        if ref is None or not ref.pipeline_version_id:
            return run.pipeline_spec is not None
        version = self.versions.get(ref.pipeline_version_id)
        return version is not None and version.pipeline_id == ref.pipeline_id

    def _version(self, pipeline_id: str, name: str, description: str, content: bytes):
        doc = yaml.safe_load(content.split(b"\n---\n")[0])
        version = kfp_server_api.V2beta1PipelineVersion(
            pipeline_id=pipeline_id,
            pipeline_version_id=str(uuid.uuid4()),
            display_name=name,
            description=description or None,
            created_at=datetime.datetime.now(datetime.UTC),
            pipeline_spec=doc,
        )
        self.versions[version.pipeline_version_id] = version
        return version

    def _pipeline(self, name: str, description: str | None, namespace: str | None = None):
        if any(p.display_name == name for p in self.pipelines.values()):
            return None  # the server refuses a second pipeline of that name
        pipeline = kfp_server_api.V2beta1Pipeline(
            pipeline_id=str(uuid.uuid4()),
            display_name=name,
            description=description,
            namespace=namespace,
            created_at=datetime.datetime.now(datetime.UTC),
        )
        self.pipelines[pipeline.pipeline_id] = pipeline
        return pipeline

    def _pipelines(self, verb: str, path: str, res: str, query: dict, data: bytes):
        parts = res.split("/")
        if res == "pipelines" and verb == "GET":
            self.calls.append((verb, path, query))
            name = _name_filter(query)
            found = [p for p in self.pipelines.values() if name is None or p.display_name == name]
            return 200, kfp_server_api.V2beta1ListPipelinesResponse(
                pipelines=found or None, total_size=len(found)
            )
        if res == "pipelines" and verb == "POST":
            body = _parse(data, "V2beta1Pipeline")
            self.calls.append((verb, path, body))
            made = self._pipeline(body.display_name, body.description, body.namespace)
            return (409, None) if made is None else (200, made)
        if res == "pipelines/upload" and verb == "POST":  # a pipeline and its first version
            self.calls.append((verb, path, query))
            made = self._pipeline(query["name"], query.get("description"), query.get("namespace"))
            if made is None:
                return 409, None
            self._version(made.pipeline_id, made.display_name, query.get("description", ""), data)
            return 200, made
        if res == "pipelines/upload_version" and verb == "POST":
            self.calls.append((verb, path, query))
            if query.get("pipelineid") not in self.pipelines:
                return 404, None
            same = [
                v
                for v in self.versions.values()
                if v.pipeline_id == query["pipelineid"] and v.display_name == query["name"]
            ]
            if same:
                return 409, None  # version names are unique per pipeline
            version = self._version(
                query["pipelineid"], query["name"], query.get("description", ""), data
            )
            return 200, version
        if len(parts) >= 3 and parts[2] == "versions" and verb == "GET":
            self.calls.append((verb, path, query))
            pid = parts[1]
            if pid not in self.pipelines:
                return 404, None
            if len(parts) == 4:
                version = self.versions.get(parts[3])
                return (404, None) if version is None else (200, version)
            name = _name_filter(query)
            found = [
                v
                for v in self.versions.values()
                if v.pipeline_id == pid and (name is None or v.display_name == name)
            ]
            found.sort(
                key=lambda v: v.created_at, reverse=query.get("sort_by", "").endswith("desc")
            )
            size = int(query.get("page_size") or len(found) or 1)
            return 200, kfp_server_api.V2beta1ListPipelineVersionsResponse(
                pipeline_versions=found[:size] or None, total_size=len(found)
            )
        return 404, None
