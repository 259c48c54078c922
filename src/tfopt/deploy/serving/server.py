"""A local model server speaking TF Serving's gRPC and REST APIs.

Production serving is the official ``tensorflow/serving`` image; this server is
for development, CI, infra validation and smoke tests where that binary is not
available. It serves the same repository layout (``<base>/<name>/<version>/``),
the same protos (``tensorflow_serving.apis``), the same REST paths and JSON
shapes, and the same status codes and error messages for bad requests, so the
same clients and checks work against both.

Versions are found by polling the base path; a new version is loaded (and its
``assets.extra/tf_serving_warmup_requests`` replayed) before the old one is
unloaded, so no request fails during a swap. SavedModels are loaded with
``tf.saved_model.load`` and called through their signatures (no Keras).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import numpy as np

from tfopt import fsutil
from tfopt._keras import tf
from tfopt.deploy.serving import config as serving_config
from tfopt.deploy.serving import repository, warmup
from tfopt.errors import ConfigError

# isort: off
# tensorflow_serving imports TensorFlow: keep it after tfopt._keras (Keras 2 selection).
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
# isort: on

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
DEFAULT_MAX_REQUEST_BYTES = 16 << 20
MAX_REQUEST_BYTES_LIMIT = 2 << 30  # gRPC's own ceiling
_STATE = {"START": 10, "LOADING": 20, "AVAILABLE": 30, "UNLOADING": 40, "END": 50}
# grpc code -> HTTP status, as TF Serving's http_server.cc maps them.
_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 412,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.CANCELLED: 499,
}


class ServingError(Exception):
    """A request error with the gRPC status code TF Serving would return."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)


def _invalid(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def _not_found(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, msg)


class Servable:
    """One loaded version: the SavedModel's signatures and their SignatureDefs."""

    def __init__(self, name: str, version: int, path: str):
        self.name, self.version, self.path = name, version, path
        from tensorflow.core.protobuf import saved_model_pb2

        self._loaded = tf.saved_model.load(path)
        self.signatures = {
            k: f for k, f in self._loaded.signatures.items() if not k.startswith("__")
        }
        self.input_specs = {
            k: dict(f.structured_input_signature[1]) for k, f in self.signatures.items()
        }
        self.output_names = {k: sorted(f.structured_outputs) for k, f in self.signatures.items()}
        sm = saved_model_pb2.SavedModel()
        with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as fh:
            sm.ParseFromString(fh.read())
        self.signature_defs = {
            k: v for k, v in sm.meta_graphs[0].signature_def.items() if not k.startswith("__")
        }
        self.warmup_requests = 0

    def check_inputs(self, signature_name: str, names: list[str]) -> dict:
        signature_name = signature_name or DEFAULT_SIGNATURE
        if signature_name not in self.signatures:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature name: "{signature_name}" not found in signature def',
            )
        specs = self.input_specs[signature_name]
        expected = sorted(specs)
        for alias in names:
            if alias not in specs:
                raise _invalid(
                    f"input tensor alias not found in signature: {alias}. Inputs "
                    f"expected to be in the set {{{','.join(expected)}}}."
                )
        if len(names) != len(specs):
            missing = sorted(set(expected) - set(names))
            raise _invalid(
                f"input size does not match signature: {len(names)}!={len(specs)} "
                f"len({{{','.join(sorted(names))}}}) != len({{{','.join(expected)}}})."
                f" Sent extra: {{}}. Missing but required: {{{','.join(missing)}}}."
            )
        return specs

    def run(
        self,
        signature_name: str,
        inputs: dict[str, np.ndarray],
        output_filter: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Validate shapes and dtypes, call the signature, return NumPy outputs."""
        signature_name = signature_name or DEFAULT_SIGNATURE
        specs = self.check_inputs(signature_name, list(inputs))
        feed = {}
        for i, (name, arr) in enumerate(sorted(inputs.items())):
            spec = specs[name]
            if arr.dtype != spec.dtype.as_numpy_dtype:
                got = _dtype_name(arr.dtype) if arr.dtype.kind not in "OUS" else "string"
                raise _invalid(
                    f"Expects arg[{i}] to be {_dtype_name(spec.dtype)} but {got} is provided"
                )
            if not spec.shape.is_compatible_with(arr.shape):
                want = [-1 if d is None else d for d in spec.shape.as_list()]
                raise _invalid(
                    f"input '{name}' has shape {list(arr.shape)} but the signature "
                    f"expects {want} (-1 = any size)"
                )
            feed[name] = tf.constant(arr)
        outputs = self.output_names[signature_name]
        wanted = list(output_filter) if output_filter else outputs
        for alias in wanted:
            if alias not in outputs:
                raise _invalid(
                    f"output tensor alias not found in signature: {alias} Outputs "
                    f"expected to be in the set {{{','.join(outputs)}}}."
                )
        try:
            result = self.signatures[signature_name](**feed)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as exc:
            raise _invalid(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
        return {k: result[k].numpy() for k in wanted}


@dataclass
class _Model:
    name: str
    base_path: str
    entry: serving_config.ModelEntry
    servables: dict[int, Servable] = field(default_factory=dict)
    states: dict[int, tuple[str, int, str]] = field(default_factory=dict)
    # version -> (last error, failed attempts, monotonic time of the next retry)
    failed: dict[int, tuple[str, int, float]] = field(default_factory=dict)


class _Metrics:
    """Request counters and latency sums in Prometheus' text format."""

    def __init__(self):
        self._lock = threading.Lock()
        self._count: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}

    def record(self, model: str, api: str, status: str, seconds: float) -> None:
        with self._lock:
            key = (model, api, status)
            self._count[key] = self._count.get(key, 0) + 1
            s = self._latency.setdefault((model, api), [0.0, 0])
            s[0] += seconds * 1e6
            s[1] += 1

    def render(self) -> str:
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        with self._lock:
            for (model, api, status), n in sorted(self._count.items()):
                lines.append(
                    f':tensorflow:serving:request_count{{model_name="{model}",'
                    f'entrypoint="{api}",status="{status}"}} {n}'
                )
            lines.append("# TYPE :tensorflow:serving:request_latency summary")
            for (model, api), (total, n) in sorted(self._latency.items()):
                labels = f'model_name="{model}",API="{api}"'
                lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {total:.1f}")
                lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {n}")
        return "\n".join(lines) + "\n"


class ModelServer:
    """Serve ``<model_base_path>/<name>/<version>/`` over gRPC and REST.

    Args:
        model_base_path: repository root (the tensorflow/serving image's
            ``MODEL_BASE_PATH``); each model is at ``<root>/<name>``.
        model_names: models to serve.
        config_file: ``models.config`` giving version policy and labels per model
            (re-read at every poll); default ``<root>/models.config`` when it
            exists, else the latest version of each model. Its ``base_path``
            entries are for the production server and are not used here.
        host: address to bind (loopback by default).
        grpc_port, rest_port: 0 picks a free port; -1 disables that API.
        poll_seconds: how often the base path and config file are re-read.
        max_request_bytes: largest request body accepted (REST and gRPC).
        grpc_workers: threads answering gRPC calls.
        max_load_retries: retries of a version that fails to load before it is given
            up (TF Serving's ``--max_num_load_retries``, default 5); its status then
            stays END with the error, and the serving version stays up.
        load_retry_interval_s: wait between load retries (TF Serving: 60 s).
    """

    def __init__(
        self,
        model_base_path: str,
        model_names: list[str] | str,
        config_file: str | None = None,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        rest_port: int = 0,
        poll_seconds: float = 2.0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        grpc_workers: int = 32,
        max_load_retries: int = 5,
        load_retry_interval_s: float = 60.0,
    ):
        if isinstance(model_names, str):
            model_names = [model_names]
        for n in model_names:
            repository.check_model_name(n)
        if not 1 <= int(max_request_bytes) <= MAX_REQUEST_BYTES_LIMIT:
            raise ConfigError(
                f"max_request_bytes={max_request_bytes} is not allowed: expected "
                f"1..{MAX_REQUEST_BYTES_LIMIT}"
            )
        if not 0 <= int(max_load_retries) <= 1000 or load_retry_interval_s < 0:
            raise ConfigError(
                f"max_load_retries={max_load_retries}, load_retry_interval_s="
                f"{load_retry_interval_s} are not allowed: expected 0..1000 and "
                f">= 0"
            )
        self.max_load_retries = int(max_load_retries)
        self.load_retry_interval_s = float(load_retry_interval_s)
        self.model_base_path = model_base_path
        self.config_file = config_file or os.path.join(
            model_base_path, serving_config.MODELS_CONFIG
        )
        self.host = host
        self.poll_seconds = poll_seconds
        self.max_request_bytes = max_request_bytes
        self._models = {
            n: _Model(
                n,
                repository.model_dir(model_base_path, n),
                serving_config.ModelEntry(n, repository.model_dir(model_base_path, n)),
            )
            for n in model_names
        }
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._want_grpc, self._want_rest = grpc_port, rest_port
        self._grpc_workers = grpc_workers
        self._grpc = None
        self._http = None
        self._threads: list[threading.Thread] = []
        self.grpc_port = -1
        self.rest_port = -1
        self.metrics = _Metrics()

    # ----------------------------------------------------------- lifecycle
    def start(self) -> ModelServer:
        """Load what is on disk, then open the ports and start polling."""
        self.poll_once()
        if self._want_grpc >= 0:
            self._start_grpc()
        if self._want_rest >= 0:
            self._start_rest()
        t = threading.Thread(target=self._poll_loop, name="tfopt-serving-poll", daemon=True)
        t.start()
        self._threads.append(t)
        log.info(
            "serving %s from %s: gRPC %s:%d, REST %s:%d",
            sorted(self._models),
            self.model_base_path,
            self.host,
            self.grpc_port,
            self.host,
            self.rest_port,
        )
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait()
            self._grpc = None
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def request_stop(self) -> None:
        """Make :meth:`wait` return (safe from a signal handler)."""
        self._stop.set()

    def wait(self) -> None:
        """Block until :meth:`stop` is called (the CLI's foreground loop)."""
        while not self._stop.wait(0.5):
            pass

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # keep serving what is loaded
                log.exception("poll of %s failed", self.model_base_path)

    # -------------------------------------------------------- version manager
    def poll_once(self) -> None:
        """Re-read config and version directories; load new versions, then unload old ones."""
        with self._poll_lock:
            try:
                entries = {e.name: e for e in serving_config.read_model_config(self.config_file)}
            except Exception as exc:  # a bad config keeps the previous one, as TF Serving does
                log.error("cannot read %s: %s", self.config_file, exc)
                entries = {n: m.entry for n, m in self._models.items()}
            for model in self._models.values():
                entry = entries.get(model.name) or serving_config.ModelEntry(
                    model.name, model.base_path
                )
                self._sync(model, entry)

    def _sync(self, model: _Model, entry: serving_config.ModelEntry) -> None:
        on_disk = [
            v
            for v in repository.list_versions(self.model_base_path, model.name)
            if fsutil.exists(os.path.join(model.base_path, str(v), "saved_model.pb"))
        ]
        aspired = entry.aspired(on_disk)
        current = dict(model.servables)
        for v in list(model.failed):
            if v not in on_disk:  # removed (or replaced) on disk: forget its failures
                del model.failed[v]
        for v in aspired:
            if v in current:
                continue
            if v in model.failed:
                _, attempts, retry_at = model.failed[v]
                if attempts > self.max_load_retries or time.monotonic() < retry_at:
                    continue  # given up (retry-then-give-up), or not yet time to retry
            self._set_state(model, v, "LOADING")
            try:
                servable = self._load(model.name, v, os.path.join(model.base_path, str(v)))
            except Exception as exc:
                msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                attempts = model.failed.get(v, ("", 0, 0.0))[1] + 1
                final = attempts > self.max_load_retries
                model.failed[v] = (msg, attempts, time.monotonic() + self.load_retry_interval_s)
                log.error(
                    "loading %s version %d failed (attempt %d of %d%s): %s",
                    model.name,
                    v,
                    attempts,
                    self.max_load_retries + 1,
                    "; giving up" if final else "",
                    msg,
                )
                self._set_state(model, v, "END", 3, msg)  # INVALID_ARGUMENT-ish load error
                continue
            model.failed.pop(v, None)
            current[v] = servable
            self._set_state(model, v, "AVAILABLE")
        new = {v: s for v, s in current.items() if v in aspired}
        if not new and model.servables:
            new = dict(model.servables)  # nothing aspired loaded: keep serving (availability)
        removed = [v for v in model.servables if v not in new]
        with self._lock:
            model.servables = new
            model.entry = entry
        for v in removed:
            self._set_state(model, v, "UNLOADING")
            self._set_state(model, v, "END")
            log.info("unloaded %s version %d", model.name, v)

    def _set_state(
        self, model: _Model, version: int, state: str, code: int = 0, message: str = ""
    ) -> None:
        with self._lock:
            model.states[version] = (state, code, message)

    def _load(self, name: str, version: int, path: str) -> Servable:
        t0 = time.perf_counter()
        servable = Servable(name, version, path)
        requests = warmup.read_warmup(path)
        for req in requests:
            inputs = {k: _tensor_to_array(v) for k, v in req.inputs.items()}
            servable.run(req.model_spec.signature_name, inputs, list(req.output_filter))
        servable.warmup_requests = len(requests)
        log.info(
            "loaded %s version %d in %.2fs (%d warmup requests replayed)",
            name,
            version,
            time.perf_counter() - t0,
            len(requests),
        )
        return servable

    # ------------------------------------------------------------- core API
    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request names, or the NOT_FOUND / INVALID_ARGUMENT TF Serving gives."""
        model = self._models.get(name)
        with self._lock:
            if model is not None and label:
                labels = model.entry.label_map
                if label not in labels:
                    raise _invalid(f"Unrecognized servable version label: {label}")
                version = labels[label]
            servables = model.servables if model is not None else {}
            if version is None:
                if servables:
                    return servables[max(servables)]
                raise _not_found(f"Servable not found for request: Latest({name})")
            if version in servables:
                return servables[version]
        raise _not_found(f"Servable not found for request: Specific({name}, {version})")

    def model_status(self, name: str, version: int | None = None, label: str | None = None):
        """``GetModelStatusResponse`` for a model (all versions known) or one version."""
        model = self._models.get(name)
        with self._lock:
            states = dict(model.states) if model is not None else {}
            labels = model.entry.label_map if model is not None else {}
        if label:
            if label not in labels:
                raise _invalid(f"Unrecognized servable version label: {label}")
            version = labels[label]
        if not states:
            raise _not_found(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise _not_found(f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        resp = get_model_status_pb2.GetModelStatusResponse()
        for v in sorted(states, reverse=True):
            state, code, message = states[v]
            s = resp.model_version_status.add()
            s.version = v
            s.state = _STATE[state]
            s.status.error_code = code
            s.status.error_message = message
        return resp

    def signature_def_map(self, servable: Servable):
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for k, v in servable.signature_defs.items():
            sig_map.signature_def[k].CopyFrom(v)
        return sig_map

    # ----------------------------------------------------------------- gRPC
    def grpc_predict(self, request):
        version, label = _spec_version(request.model_spec)
        servable = self.resolve(request.model_spec.name, version, label)
        sig = request.model_spec.signature_name or DEFAULT_SIGNATURE
        specs = servable.check_inputs(sig, list(request.inputs))
        inputs = {}
        for i, name in enumerate(sorted(request.inputs)):
            proto = request.inputs[name]
            if proto.dtype != specs[name].dtype.as_datatype_enum:
                got = _dtype_name(proto.dtype) if proto.dtype else "invalid"
                raise _invalid(
                    f"Expects arg[{i}] to be {_dtype_name(specs[name].dtype)} but {got} is provided"
                )
            inputs[name] = _tensor_to_array(proto)
        outputs = servable.run(sig, inputs, list(request.output_filter))
        resp = predict_pb2.PredictResponse()
        _fill_spec(resp.model_spec, servable, sig)
        for k, v in outputs.items():
            resp.outputs[k].CopyFrom(tf.make_tensor_proto(v))
        return resp

    def grpc_metadata(self, request):
        for f in request.metadata_field:
            if f != "signature_def":
                raise _invalid(f"Metadata field {f} is not supported")
        if not request.metadata_field:
            raise _invalid("GetModelMetadataRequest must specify at least one metadata_field")
        version, label = _spec_version(request.model_spec)
        servable = self.resolve(request.model_spec.name, version, label)
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        _fill_spec(resp.model_spec, servable, "")
        resp.metadata["signature_def"].Pack(self.signature_def_map(servable))
        return resp

    def grpc_status(self, request):
        version, label = _spec_version(request.model_spec)
        return self.model_status(request.model_spec.name, version, label)

    def _start_grpc(self) -> None:
        server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self._grpc_workers, thread_name_prefix="tfopt-grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", self.max_request_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            _PredictionService(self), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(self), server)
        port = server.add_insecure_port(f"{_host_port(self.host)}:{self._want_grpc}")
        if not port:
            raise OSError(f"cannot bind gRPC to {self.host}:{self._want_grpc}")
        server.start()
        self._grpc, self.grpc_port = server, port

    # ----------------------------------------------------------------- REST
    def _start_rest(self) -> None:
        handler = type("Handler", (_RestHandler,), {"server_ref": self})
        httpd = ThreadingHTTPServer((self.host, self._want_rest), handler)
        httpd.daemon_threads = True
        self._http, self.rest_port = httpd, httpd.server_address[1]
        t = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="tfopt-rest",
            daemon=True,
        )
        t.start()
        self._threads.append(t)

    def rest(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        """Answer one REST call; returns (HTTP status, JSON object)."""
        if method == "GET" and path == serving_config.PROMETHEUS_PATH:
            return 200, {"__text__": self.metrics.render()}
        m = _REST_PATH.match(path)
        if not path.startswith("/v1/"):
            return 404, {"error": f"Not found: {method} {path}"}
        if path.rstrip("/") == "/v1/models" and method == "GET":
            raise _invalid("Missing model name in request.")
        if not m or not m.group("name"):
            raise _invalid(f"Malformed request: {method} {path}")
        name, verb = m.group("name"), m.group("verb")
        version = int(m.group("version")) if m.group("version") else None
        label = m.group("label")
        if version is not None and version > (1 << 63) - 1:
            raise _invalid(f"Failed to convert version: {m.group('version')} to numeric.")
        if method == "GET" and not verb:
            if m.group("metadata"):
                servable = self.resolve(name, version, label)
                return 200, _metadata_json(servable, self.signature_def_map(servable))
            return 200, _status_json(self.model_status(name, version, label))
        if method == "POST" and verb == "predict" and not m.group("metadata"):
            return 200, self._rest_predict(name, version, label, body)
        if method == "POST" and verb in ("classify", "regress"):
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"{verb} is not supported by the tfopt local server; use predict",
            )
        raise _invalid(f"Malformed request: {method} {path}")

    def _rest_predict(self, name, version, label, body: bytes) -> dict:
        servable = self.resolve(name, version, label)
        if not body.strip():
            raise _invalid("JSON Parse error: The document is empty")
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise _invalid(f"JSON Parse error: {type(exc).__name__}: {exc}") from None
        if not isinstance(doc, dict):
            raise _invalid("JSON Parse error: the request body must be a JSON object")
        sig = doc.get("signature_name", "")
        if not isinstance(sig, str):
            raise _invalid("'signature_name' key must be a string value.")
        sig = sig or DEFAULT_SIGNATURE
        if ("instances" in doc) == ("inputs" in doc):
            if "instances" in doc:
                raise _invalid(
                    "Not formatted correctly expecting only one of 'inputs' or "
                    "'instances' keys exists"
                )
            raise _invalid("Missing 'inputs' or 'instances' key")
        servable.check_inputs(sig, list(servable.input_specs.get(sig, {})))
        specs = servable.input_specs[sig]
        row = "instances" in doc
        inputs = (
            _rows_to_inputs(doc["instances"], specs)
            if row
            else _columns_to_inputs(doc["inputs"], specs)
        )
        outputs = servable.run(sig, inputs)
        if row:
            n = {len(v) for v in outputs.values() if v.ndim}
            if len(outputs) == 1:
                return {"predictions": next(iter(outputs.values())).tolist()}
            if len(n) != 1:
                raise _invalid("Batch size of outputs differs; use the 'inputs' format")
            return {
                "predictions": [
                    {k: v[i].tolist() for k, v in outputs.items()} for i in range(n.pop())
                ]
            }
        if len(outputs) == 1:
            return {"outputs": next(iter(outputs.values())).tolist()}
        return {"outputs": {k: v.tolist() for k, v in outputs.items()}}


_REST_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<metadata>/metadata)?(?::(?P<verb>[a-z]+))?/?$"
)


def _host_port(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _spec_version(spec) -> tuple[int | None, str | None]:
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return spec.version.value, None
    if which == "version_label":
        return None, spec.version_label
    return None, None


def _fill_spec(spec, servable: Servable, signature_name: str) -> None:
    spec.name = servable.name
    spec.version.value = servable.version
    spec.signature_name = signature_name


def _dtype_name(dtype) -> str:
    """TF's DataTypeString: ``float``, ``double``, ``int64`` (what TF Serving prints)."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(tf.as_dtype(dtype).as_datatype_enum)[3:].lower()


def _tensor_to_array(proto) -> np.ndarray:
    try:
        return tf.make_ndarray(proto)
    except Exception as exc:
        raise _invalid(f"Cannot parse input tensor: {exc}") from None


def _json_array(value, spec, name: str) -> np.ndarray:
    want = spec.dtype.as_numpy_dtype
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, RecursionError):
        raise _invalid(
            f"Failed to process element: input '{name}' is a ragged list; every "
            f"row must have the same shape"
        ) from None
    kind = arr.dtype.kind
    ok = {"f": "iuf", "i": "iu", "u": "iu", "b": "b", "O": "OSU", "S": "SU", "U": "SU"}
    if kind not in ok.get(np.dtype(want).kind, np.dtype(want).kind):
        bad = {"U": "String", "S": "String", "b": "Bool", "O": "Object"}.get(kind, kind)
        raise _invalid(
            f"JSON Value of input '{name}' Type: {bad} is not of expected type: "
            f"{_dtype_name(spec.dtype)}"
        )
    return arr.astype(want)


def _rows_to_inputs(instances, specs: dict) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise _invalid("Expecting 'instances' to be a non-empty list/array")
    names = sorted(specs)
    if all(isinstance(i, dict) for i in instances):
        for inst in instances:
            if sorted(inst) != names:
                raise _invalid(
                    f"instance keys {sorted(inst)} do not match the signature inputs {names}"
                )
        return {n: _json_array([inst[n] for inst in instances], specs[n], n) for n in names}
    if any(isinstance(i, dict) for i in instances):
        raise _invalid("Expecting all 'instances' to be objects or all to be values")
    if len(names) != 1:
        raise _invalid(
            f"The signature has {len(names)} inputs {names}; each instance must be "
            f"an object naming them"
        )
    return {names[0]: _json_array(instances, specs[names[0]], names[0])}


def _columns_to_inputs(inputs, specs: dict) -> dict[str, np.ndarray]:
    names = sorted(specs)
    if isinstance(inputs, dict):
        for alias in inputs:
            if alias not in specs:
                raise _invalid(
                    f"input tensor alias not found in signature: {alias}. Inputs "
                    f"expected to be in the set {{{','.join(names)}}}."
                )
        if sorted(inputs) != names:
            raise _invalid(f"input size does not match signature: {len(inputs)}!={len(names)}")
        return {n: _json_array(inputs[n], specs[n], n) for n in names}
    if len(names) != 1:
        raise _invalid(
            f"The signature has {len(names)} inputs {names}; 'inputs' must be an object naming them"
        )
    return {names[0]: _json_array(inputs, specs[names[0]], names[0])}


def _status_json(resp) -> dict:
    from google.protobuf import json_format

    return json_format.MessageToDict(
        resp, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def _metadata_json(servable: Servable, sig_map) -> dict:
    from google.protobuf import json_format

    return {
        "model_spec": {
            "name": servable.name,
            "signature_name": "",
            "version": str(servable.version),
        },
        "metadata": {
            "signature_def": json_format.MessageToDict(sig_map, preserving_proto_field_name=True)
        },
    }


def _grpc_call(server: ModelServer, fn, request, context, api: str):
    t0 = time.perf_counter()
    try:
        resp = fn(request)
    except ServingError as exc:
        server.metrics.record(request.model_spec.name, api, exc.code.name, time.perf_counter() - t0)
        context.abort(exc.code, exc.message)
    server.metrics.record(request.model_spec.name, api, "OK", time.perf_counter() - t0)
    return resp


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server: ModelServer):
        self._s = server

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        return _grpc_call(self._s, self._s.grpc_predict, request, context, "predict")

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _grpc_call(self._s, self._s.grpc_metadata, request, context, "metadata")


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: ModelServer):
        self._s = server

    def GetModelStatus(self, request, context):  # noqa: N802
        return _grpc_call(self._s, self._s.grpc_status, request, context, "status")


class _RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server_version = "tfopt-serving"
    server_ref: ModelServer

    def log_message(self, format, *args):  # noqa: A002 (stdlib signature)
        log.debug("rest %s - %s", self.address_string(), format % args)

    def do_GET(self):  # noqa: N802
        self._handle("GET", b"")

    def do_POST(self):  # noqa: N802
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
        m = _REST_PATH.match(path)
        model = m.group("name") if m else ""
        try:
            status, payload = srv.rest(method, path, body)
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


def wait_available(
    server: ModelServer, name: str, version: int | None = None, timeout: float = 60.0
) -> Servable:
    """Poll until ``name`` (or one version of it) is served; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return server.resolve(name, version)
        except ServingError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{name} version {version or 'latest'} not available after {timeout:.0f}s"
                ) from None
            server.poll_once()
            time.sleep(0.05)
