"""TF Serving's REST API (``model_servers/http_rest_api_handler.cc``) on a local ``ModelServer``.

``POST /v1/models/<name>[/versions/<v>|/labels/<l>]:(predict|classify|regress)``,
``GET /v1/models/<name>[/versions/<v>|/labels/<l>][/metadata]``; errors are
``{"error": message}`` with the HTTP status of the gRPC code.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

from google.protobuf import json_format

from tfopt.deploy.serving import config as serving_config
from tfopt.deploy.serving import grpc_api
from tfopt.deploy.serving import rest_codec as codec
from tfopt.deploy.serving.backend import Backend
from tfopt.deploy.serving.status import DEFAULT_SIGNATURE, ServingError, invalid

# isort: off
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    regression_pb2,
)
# isort: on

log = logging.getLogger(__name__)

REST_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>-?\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<metadata>/metadata)?(?::(?P<verb>[a-z]+))?/?$"
)


def _proto_json(msg) -> dict:
    # TF Serving prints with always_print_primitive_fields and proto field names
    # (http_rest_api_util.cc ToJsonString).
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def metadata_json(resp) -> dict:
    """The GetModelMetadataResponse JSON TF Serving writes (model_spec + unpacked map)."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sig_map)
    return {
        "model_spec": _proto_json(resp.model_spec),
        "metadata": {"signature_def": _proto_json(sig_map)},
    }


def handle(srv: Backend, method: str, path: str, body: bytes) -> tuple[int, dict]:
    """Answer one REST call; returns (HTTP status, JSON object)."""
    if method == "GET" and path == serving_config.PROMETHEUS_PATH:
        return 200, {"__text__": srv.metrics.render()}
    if not path.startswith("/v1/"):
        return 404, {"error": f"Not found: {method} {path}"}
    if path.rstrip("/") == "/v1/models" and method == "GET":
        raise invalid("Missing model name in request.")
    m = REST_PATH.match(path)
    if not m or not m.group("name"):
        raise invalid(f"Malformed request: {method} {path}")
    name = urllib.parse.unquote(m.group("name"))
    verb, label = m.group("verb"), m.group("label")
    label = urllib.parse.unquote(label) if label else None
    version = int(m.group("version")) if m.group("version") else None
    if version is not None and not -(1 << 63) <= version < (1 << 63):
        raise invalid(f"Failed to convert version: {m.group('version')} to numeric.")
    spec = dict(name=name, version=version, label=label)
    if method == "GET" and not verb:
        if m.group("metadata"):
            req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
            _spec(req.model_spec, **spec)
            return 200, metadata_json(grpc_api.metadata(srv, req))
        return 200, _proto_json(srv.model_status(name, version, label))
    if method == "POST" and not m.group("metadata") and verb in ("predict", "classify", "regress"):
        doc = codec.parse_body(body)
        if verb == "predict":
            return 200, _predict(srv, spec, doc)
        req = (
            classification_pb2.ClassificationRequest()
            if verb == "classify"
            else regression_pb2.RegressionRequest()
        )
        _spec(req.model_spec, **spec)
        req.model_spec.signature_name = doc.get("signature_name", "")
        codec.fill_input(doc, req.input)
        if verb == "classify":
            return 200, codec.classify_json(grpc_api.classify(srv, req).result)
        return 200, codec.regress_json(grpc_api.regress(srv, req).result)
    raise invalid(f"Malformed request: {method} {path}")


def _spec(model_spec, name, version, label) -> None:
    model_spec.name = name
    if version is not None:
        model_spec.version.value = version
    elif label:
        model_spec.version_label = label


def _predict(srv: Backend, spec: dict, doc: dict) -> dict:
    servable = srv.resolve(**spec)
    sig = doc.get("signature_name") or DEFAULT_SIGNATURE
    if ("instances" in doc) == ("inputs" in doc):
        if "instances" in doc:
            raise invalid(
                "Not formatted correctly expecting only one of 'inputs' or 'instances' keys exists"
            )
        raise invalid("Missing 'inputs' or 'instances' key")
    if sig not in servable.input_specs:  # GetInfoMap
        raise invalid(f'Serving signature name: "{sig}" not found in signature def')
    specs = servable.input_specs[sig]
    row = "instances" in doc
    if row:
        inputs = codec.rows_to_inputs(doc["instances"], specs)
    else:
        inputs = codec.columns_to_inputs(doc["inputs"], specs)
    return codec.predict_json(servable.run(sig, inputs), row)


class RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server_version = "tfopt-serving"
    server_ref: Backend

    def log_message(self, format, *args):
        log.debug("rest %s - %s", self.address_string(), format % args)

    def do_GET(self):
        self._handle("GET", b"")

    def do_POST(self):
        srv = self.server_ref
        length = self.headers.get("Content-Length")
        if length is None or not length.strip().isdigit():
            self.close_connection = True
            self._send(411, {"error": "A Content-Length header is required"})
            return
        n = int(length)
        if n > srv.max_request_bytes:
            self._discard(n)
            self._send(
                413,
                {
                    "error": f"Request body of {n} bytes exceeds the limit of "
                    f"{srv.max_request_bytes} bytes"
                },
            )
            return
        self._handle("POST", self.rfile.read(n))

    def _discard(self, n: int) -> None:
        # Read (and drop) a moderately oversized body so the client gets the 413
        # instead of a reset; for a huge one close the connection instead.
        if n > 8 * self.server_ref.max_request_bytes:
            self.close_connection = True
            return
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                break
            n -= len(chunk)

    def _handle(self, method: str, body: bytes) -> None:
        srv = self.server_ref
        path = self.path.split("?", 1)[0]
        t0 = time.perf_counter()
        m = REST_PATH.match(path)
        model = m.group("name") if m else ""
        try:
            status, payload = handle(srv, method, path, body)
            outcome = "OK"
        except ServingError as exc:
            status, payload, outcome = exc.http_status, {"error": exc.message}, exc.code.name
        except Exception as exc:  # never let one request take the server down
            log.exception("REST %s %s failed", method, path)
            status, payload, outcome = 500, {"error": f"Internal: {exc}"}, "INTERNAL"
        if model:
            srv.metrics.record(model, "rest", outcome, time.perf_counter() - t0)
        self._send(status, payload)

    def _send(self, status: int, payload: dict) -> None:
        if "__text__" in payload:
            data, ctype = payload["__text__"].encode(), "text/plain; version=0.0.4"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        self.send_response(
            status, HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        )
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
