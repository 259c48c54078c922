"""Request errors with the gRPC status codes (and HTTP statuses) TF Serving returns.

Shared by the servable, the gRPC services and the REST handler of the local
server, so a bad request fails the same way over both APIs.
"""

from __future__ import annotations

import grpc

from tfopt._keras import tf

DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"

# gRPC code -> HTTP status, as TF Serving's ToHTTPStatusCode maps them
# (tensorflow_serving/model_servers/http_server.cc). Every code is listed.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,  # CLIENT_CLOSED_REQUEST
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
# tf.errors codes are the gRPC codes' numbers (tensorflow/core/protobuf/error_codes.proto).
_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


class ServingError(Exception):
    """A request error with the gRPC status code TF Serving would return."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS.get(self.code, 500)


def from_tf_code(error_code: int, message: str) -> ServingError:
    """A graph error (``tf.errors.OpError.error_code``) with its own code, as a TF Serving
    session's status reaches the client; an unknown number is UNKNOWN."""
    return ServingError(_BY_NUMBER.get(error_code, grpc.StatusCode.UNKNOWN), message)


def invalid(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def not_found(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, msg)


def precondition(msg: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, msg)


def dtype_name(dtype) -> str:
    """TF's DataTypeString: ``float``, ``double``, ``int64`` (what TF Serving prints)."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(tf.as_dtype(dtype).as_datatype_enum)[3:].lower()


def enum_name(dtype) -> str:
    """``DataType_Name``: ``DT_FLOAT`` (classifier.cc / regressor.cc error messages)."""
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(tf.as_dtype(dtype).as_datatype_enum)


def host_port(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
