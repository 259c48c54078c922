"""Clients for TF Serving's gRPC and REST APIs (the official server or tfopt's local one)."""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
from dataclasses import dataclass

import grpc
import numpy as np

from tfopt._keras import tf

# isort: off
# tensorflow_serving imports TensorFlow: keep it after tfopt._keras (Keras 2 selection).
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
# isort: on

DEFAULT_SIGNATURE = "serving_default"
# Seconds per call. The first request to a freshly loaded version pays TF's first-call
# setup, which on a busy CPU host (a CI runner, a node shared with training) passes
# 10 s; deploy's and infra validation's smoke tests already used 30.
DEFAULT_TIMEOUT_S = 30.0
STATE_NAMES = {v: k for k, v in get_model_status_pb2.ModelVersionStatus.State.items()}


@dataclass(frozen=True)
class Prediction:
    """Outputs of one Predict call and the version that answered it."""

    outputs: dict[str, np.ndarray]
    version: int


class RestError(Exception):
    """A non-200 REST answer; ``status`` is the HTTP code, ``message`` TF Serving's error."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _set_version(spec, version: int | None, label: str | None) -> None:
    if version is not None and label:
        raise ValueError("give a version or a label, not both")
    if version is not None:
        spec.version.value = int(version)
    elif label:
        spec.version_label = label


class GrpcClient:
    """``PredictionService`` and ``ModelService`` over one channel.

    Args:
        target: ``host:port``.
        timeout: seconds per call.
        max_message_bytes: largest message sent or received.
    """

    def __init__(
        self, target: str, timeout: float = DEFAULT_TIMEOUT_S, max_message_bytes: int = 64 << 20
    ):
        self.target = target
        self.timeout = timeout
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def predict_request(self, request):
        """Send a ready ``PredictRequest`` (e.g. a warmup record); returns the response."""
        return self._predict.Predict(request, timeout=self.timeout)

    def predict(
        self,
        model_name: str,
        inputs: dict[str, np.ndarray] | np.ndarray,
        version: int | None = None,
        label: str | None = None,
        signature_name: str = DEFAULT_SIGNATURE,
        output_filter: list[str] | None = None,
    ) -> Prediction:
        """Predict; a bare array is sent as input ``x``."""
        if not isinstance(inputs, dict):
            inputs = {"x": inputs}
        req = predict_pb2.PredictRequest()
        req.model_spec.name = model_name
        req.model_spec.signature_name = signature_name
        _set_version(req.model_spec, version, label)
        for k, v in inputs.items():
            req.inputs[k].CopyFrom(tf.make_tensor_proto(np.asarray(v)))
        req.output_filter.extend(output_filter or [])
        resp = self.predict_request(req)
        return Prediction(
            {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}, resp.model_spec.version.value
        )

    def metadata(self, model_name: str, version: int | None = None, label: str | None = None):
        """``GetModelMetadataResponse``; ``signature_defs(resp)`` unpacks it."""
        req = get_model_metadata_pb2.GetModelMetadataRequest()
        req.model_spec.name = model_name
        _set_version(req.model_spec, version, label)
        req.metadata_field.append("signature_def")
        return self._predict.GetModelMetadata(req, timeout=self.timeout)

    def _examples_request(self, req, model_name, examples, context, signature_name, version, label):
        req.model_spec.name = model_name
        req.model_spec.signature_name = signature_name
        _set_version(req.model_spec, version, label)
        fill_input(req.input, examples, context)
        return req

    def classify(
        self,
        model_name: str,
        examples: list,
        signature_name: str = DEFAULT_SIGNATURE,
        version: int | None = None,
        label: str | None = None,
        context=None,
    ):
        """``ClassificationResponse`` for ``tf.train.Example`` protos (and a shared context)."""
        req = self._examples_request(
            classification_pb2.ClassificationRequest(),
            model_name,
            examples,
            context,
            signature_name,
            version,
            label,
        )
        return self._predict.Classify(req, timeout=self.timeout)

    def regress(
        self,
        model_name: str,
        examples: list,
        signature_name: str = DEFAULT_SIGNATURE,
        version: int | None = None,
        label: str | None = None,
        context=None,
    ):
        """``RegressionResponse`` for ``tf.train.Example`` protos (and a shared context)."""
        req = self._examples_request(
            regression_pb2.RegressionRequest(),
            model_name,
            examples,
            context,
            signature_name,
            version,
            label,
        )
        return self._predict.Regress(req, timeout=self.timeout)

    def multi_inference(
        self, model_name: str, tasks: list[tuple[str, str]], examples: list, context=None
    ):
        """``MultiInferenceResponse``; ``tasks`` are (signature name, method name) pairs."""
        req = inference_pb2.MultiInferenceRequest()
        for sig, method in tasks:
            t = req.tasks.add()
            t.model_spec.name, t.model_spec.signature_name, t.method_name = model_name, sig, method
        fill_input(req.input, examples, context)
        return self._predict.MultiInference(req, timeout=self.timeout)

    def status(
        self, model_name: str, version: int | None = None, label: str | None = None
    ) -> dict[int, str]:
        """{version: state name} from ``GetModelStatus``."""
        req = get_model_status_pb2.GetModelStatusRequest()
        req.model_spec.name = model_name
        _set_version(req.model_spec, version, label)
        resp = self._models.GetModelStatus(req, timeout=self.timeout)
        return {s.version: STATE_NAMES[s.state] for s in resp.model_version_status}


def fill_input(input_proto, examples: list, context=None) -> None:
    """An ``Input`` proto: ``example_list``, or ``example_list_with_context``."""
    target = input_proto.example_list if context is None else input_proto.example_list_with_context
    if context is not None:
        target.context.CopyFrom(context)
    for e in examples:
        target.examples.add().CopyFrom(e)


def signature_defs(metadata_response) -> dict:
    """{signature name: SignatureDef} from a ``GetModelMetadataResponse``."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    metadata_response.metadata["signature_def"].Unpack(sig_map)
    return dict(sig_map.signature_def)


class RestClient:
    """TF Serving's REST API with one keep-alive connection per thread.

    Args:
        base_url: ``http://host:port``.
        timeout: seconds per call.
    """

    def __init__(self, base_url: str, timeout: float = DEFAULT_TIMEOUT_S):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise ValueError(f"base_url {base_url!r}: expected http://host:port")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.timeout = timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(
        self, method: str, path: str, body: bytes | dict | None = None
    ) -> tuple[int, dict | str]:
        """Raw call: (HTTP status, parsed JSON or text). Retries once on a dropped connection."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        headers = {"Content-Type": "application/json"} if data is not None else {}
        for attempt in (0, 1):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt:
                    raise
        ctype = resp.getheader("Content-Type", "")
        return resp.status, (json.loads(raw) if "json" in ctype else raw.decode())

    def _call(self, method: str, path: str, body=None) -> dict:
        status, payload = self.request(method, path, body)
        if status != 200:
            msg = payload.get("error", payload) if isinstance(payload, dict) else payload
            raise RestError(status, str(msg))
        return payload  # type: ignore[return-value]  # a 200 from the REST API is JSON

    @staticmethod
    def model_path(model_name: str, version: int | None = None, label: str | None = None) -> str:
        if version is not None and label:
            raise ValueError("give a version or a label, not both")
        path = f"/v1/models/{urllib.parse.quote(model_name)}"
        if version is not None:
            path += f"/versions/{int(version)}"
        elif label:
            path += f"/labels/{urllib.parse.quote(label)}"
        return path

    def predict(
        self,
        model_name: str,
        instances=None,
        inputs=None,
        version: int | None = None,
        label: str | None = None,
        signature_name: str | None = None,
    ) -> dict:
        """POST ``:predict`` with the row (``instances``) or columnar (``inputs``) format."""
        body: dict = {}
        if signature_name:
            body["signature_name"] = signature_name
        if instances is not None:
            body["instances"] = (
                np.asarray(instances).tolist() if isinstance(instances, np.ndarray) else instances
            )
        if inputs is not None:
            body["inputs"] = inputs.tolist() if isinstance(inputs, np.ndarray) else inputs
        return self._call("POST", self.model_path(model_name, version, label) + ":predict", body)

    def status(self, model_name: str, version: int | None = None, label: str | None = None) -> dict:
        return self._call("GET", self.model_path(model_name, version, label))

    def metadata(
        self, model_name: str, version: int | None = None, label: str | None = None
    ) -> dict:
        return self._call("GET", self.model_path(model_name, version, label) + "/metadata")

    def _examples(self, verb, model_name, examples, context, signature_name, version, label):
        body: dict = {"examples": examples}
        if context is not None:
            body["context"] = context
        if signature_name:
            body["signature_name"] = signature_name
        return self._call("POST", self.model_path(model_name, version, label) + verb, body)

    def classify(
        self,
        model_name: str,
        examples: list[dict],
        context: dict | None = None,
        signature_name: str | None = None,
        version: int | None = None,
        label: str | None = None,
    ) -> dict:
        """POST ``:classify``: ``{"results": [[[label, score], ...], ...]}``."""
        return self._examples(
            ":classify", model_name, examples, context, signature_name, version, label
        )

    def regress(
        self,
        model_name: str,
        examples: list[dict],
        context: dict | None = None,
        signature_name: str | None = None,
        version: int | None = None,
        label: str | None = None,
    ) -> dict:
        """POST ``:regress``: ``{"results": [value, ...]}``."""
        return self._examples(
            ":regress", model_name, examples, context, signature_name, version, label
        )
