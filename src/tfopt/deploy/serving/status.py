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
