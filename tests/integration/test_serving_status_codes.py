"""Graph errors reach REST and gRPC clients with TF Serving's codes (issue 35, item 4).

A TF Serving session returns the kernel's ``Status``; the gRPC API passes its code on and
the REST API maps it with ``ToHTTPStatusCode`` (tensorflow_serving/model_servers/
http_server.cc). The table below is written out from that source, not read from tfopt.

Two graphs fail for real (an exhausted ``tf.data`` iterator: OUT_OF_RANGE; a missing
file: NOT_FOUND). The other codes cannot be provoked from a graph on demand, so one
model's signature function (TensorFlow's, not tfopt's) is swapped for one that raises
each ``tf.errors`` class the way an eager signature call raises it.
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from tfopt._keras import tf
from tfopt.deploy.serving import client as clients
from tfopt.deploy.serving import config as sc
from tfopt.deploy.serving import server

# http_server.cc ToHTTPStatusCode, case by case.
TF_SERVING_HTTP = {
    "CANCELLED": 499,  # CLIENT_CLOSED_REQUEST
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}
ERROR_CLASSES = {
    "CANCELLED": tf.errors.CancelledError,
    "UNKNOWN": tf.errors.UnknownError,
    "INVALID_ARGUMENT": tf.errors.InvalidArgumentError,
    "DEADLINE_EXCEEDED": tf.errors.DeadlineExceededError,
    "NOT_FOUND": tf.errors.NotFoundError,
    "ALREADY_EXISTS": tf.errors.AlreadyExistsError,
    "PERMISSION_DENIED": tf.errors.PermissionDeniedError,
    "RESOURCE_EXHAUSTED": tf.errors.ResourceExhaustedError,
    "FAILED_PRECONDITION": tf.errors.FailedPreconditionError,
    "ABORTED": tf.errors.AbortedError,
    "OUT_OF_RANGE": tf.errors.OutOfRangeError,
    "UNIMPLEMENTED": tf.errors.UnimplementedError,
    "INTERNAL": tf.errors.InternalError,
    "UNAVAILABLE": tf.errors.UnavailableError,
    "DATA_LOSS": tf.errors.DataLossError,
    "UNAUTHENTICATED": tf.errors.UnauthenticatedError,
}
KERNEL_MSG = "Fused conv implementation does not support grouped convolutions for now."


class _Graph(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="x")])
    def exhausted(self, x):
        # No element is over 100: the iterator ends before its first element.
        ds = tf.data.Dataset.from_tensor_slices(x).filter(lambda v: v > 100)
        return {"y": iter(ds).get_next()}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="x")])
    def read(self, x):
        return {"y": tf.io.read_file(x[0])}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
    def serve(self, x):
        return {"y": 2.0 * x}


class _Raising:
    """Stands for a signature whose graph fails with ``error`` (as an eager call words it)."""

    def __init__(self, error):
        self.error = error
        self.captured_inputs: list = []

    def _call_flat(self, feed, captured):
        raise self.error


def _eager_error(cls):
    msg = (
        "Graph execution error:\n\nDetected at node conv1/Relu defined at (most recent call "
        f"last):\n<stack traces unavailable>\n{KERNEL_MSG}\n\t [[{{{{node conv1/Relu}}}}]] "
        "[Op:__inference_signature_wrapper_serve_977]"
    )
    return cls(None, None, msg)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("codes")
    m = _Graph()
    sigs = {"serving_default": m.serve, "exhausted": m.exhausted, "read": m.read}
    tf.saved_model.save(m, str(root / "graph" / "1"), signatures=sigs)
    sc.write_model_config(
        str(root / "models.config"), [sc.ModelEntry("graph", str(root / "graph"))]
    )
    srv = server.ModelServer(str(root), [], poll_seconds=60).start()
    server.wait_available(srv, "graph")
    g = clients.GrpcClient(f"127.0.0.1:{srv.grpc_port}")
    r = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}")
    yield {"srv": srv, "g": g, "r": r, "root": root}
    g.close()
    r.close()
    srv.stop()


def _json(v):
    return v.decode() if isinstance(v, bytes) else v


def _both(env, inputs, signature):
    """(HTTP status, REST error) and (gRPC code, details) of one failing Predict."""
    rest = env["r"].request(
        "POST",
        "/v1/models/graph:predict",
        {"signature_name": signature, "instances": [_json(v) for v in inputs.tolist()]},
    )
    with pytest.raises(grpc.RpcError) as err:
        env["g"].predict("graph", inputs, signature_name=signature)
    return rest, (err.value.code(), err.value.details())


def test_table_covers_every_tf_error_class():
    classes = {c for c in vars(tf.errors).values() if isinstance(c, type)}
    op_errors = {c for c in classes if issubclass(c, tf.errors.OpError)} - {tf.errors.OpError}
    assert op_errors == set(ERROR_CLASSES.values())
    assert set(ERROR_CLASSES) == {c.name for c in grpc.StatusCode} - {"OK"}


@pytest.mark.parametrize("code", sorted(TF_SERVING_HTTP))
def test_graph_error_keeps_its_code_over_rest_and_grpc(env, code):
    servable = env["srv"].resolve("graph")
    real = servable.signatures["serving_default"]
    servable.signatures["serving_default"] = _Raising(_eager_error(ERROR_CLASSES[code]))
    try:
        rest, rpc = _both(env, np.ones((1, 2), np.float32), "serving_default")
    finally:
        servable.signatures["serving_default"] = real
    assert rest == (TF_SERVING_HTTP[code], {"error": KERNEL_MSG})
    assert rpc == (grpc.StatusCode[code], KERNEL_MSG)


def test_exhausted_iterator_is_out_of_range_400(env):
    rest, rpc = _both(env, np.array([1, 2], np.int64), "exhausted")
    assert rest == (400, {"error": "End of sequence"})
    assert rpc == (grpc.StatusCode.OUT_OF_RANGE, "End of sequence")


def test_missing_file_in_the_graph_is_not_found_404(env):
    missing = str(env["root"] / "missing.bin")
    rest, rpc = _both(env, np.array([missing.encode()]), "read")
    assert rest[0] == 404 and missing in rest[1]["error"]
    assert rpc[0] == grpc.StatusCode.NOT_FOUND and missing in rpc[1]


def test_model_still_serves_after_graph_errors(env):
    assert env["r"].request("POST", "/v1/models/graph:predict", {"instances": [[1.0, 2.0]]}) == (
        200,
        {"predictions": [[2.0, 4.0]]},
    )
