"""TF Serving's ``PredictionService`` and ``ModelService`` on a local ``ModelServer``.

Predict follows ``servables/tensorflow/predict_util.cc``; Classify, Regress and
MultiInference ``classification_service.cc``, ``regression_service.cc`` and
``multi_inference.cc``; GetModelMetadata ``get_model_metadata_impl.cc``. The
same handlers back the REST API (``rest.py``), as in TF Serving.
"""

from __future__ import annotations

import logging
import time

import grpc

from tfopt._keras import tf
from tfopt.deploy.serving import servable as sv
from tfopt.deploy.serving.backend import Backend
from tfopt.deploy.serving.status import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    ServingError,
    dtype_name,
    invalid,
)

# isort: off
# tensorflow_serving imports TensorFlow: keep it after tfopt._keras (Keras 2 selection).
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
# isort: on

log = logging.getLogger(__name__)


def spec_version(spec) -> tuple[int | None, str | None]:
    which = spec.WhichOneof("version_choice")
    if which == "version":
        return spec.version.value, None
    if which == "version_label":
        return None, spec.version_label
    return None, None


def fill_spec(spec, servable: sv.Servable, signature_name: str | None) -> None:
    """MakeModelSpec (util.cc): the name, version and (defaulted) signature answered."""
    spec.name = servable.name
    spec.version.value = servable.version
    if signature_name is not None:
        spec.signature_name = signature_name or DEFAULT_SIGNATURE


def _resolve(srv: Backend, spec) -> sv.Servable:
    version, label = spec_version(spec)
    return srv.resolve(spec.name, version, label)


def predict(srv: Backend, request):
    servable = _resolve(srv, request.model_spec)
    sig = request.model_spec.signature_name or DEFAULT_SIGNATURE
    specs = servable.check_inputs(sig, list(request.inputs))
    inputs = {}
    for i, name in enumerate(sorted(request.inputs)):
        proto = request.inputs[name]
        if proto.dtype != specs[name].dtype.as_datatype_enum:
            got = dtype_name(proto.dtype) if proto.dtype else "invalid"
            raise invalid(
                f"Expects arg[{i}] to be {dtype_name(specs[name].dtype)} but {got} is provided"
            )
        try:
            inputs[name] = tf.make_ndarray(proto)
        except Exception as exc:
            raise invalid(f"Cannot parse input tensor: {exc}") from None
    outputs = servable.run(sig, inputs, list(request.output_filter))
    resp = predict_pb2.PredictResponse()
    fill_spec(resp.model_spec, servable, sig)
    for k, v in outputs.items():
        resp.outputs[k].CopyFrom(tf.make_tensor_proto(v))
    return resp


def classify(srv: Backend, request):
    servable = _resolve(srv, request.model_spec)
    sig, _ = servable.check_classify(request.model_spec.signature_name)
    examples = sv.serialized_examples(request.input)
    resp = classification_pb2.ClassificationResponse()
    fill_spec(resp.model_spec, servable, sig)
    sv.classification_result(servable.run_examples(sig, examples), len(examples), resp.result)
    return resp


def regress(srv: Backend, request):
    servable = _resolve(srv, request.model_spec)
    sig, _ = servable.check_regress(request.model_spec.signature_name)
    examples = sv.serialized_examples(request.input)
    resp = regression_pb2.RegressionResponse()
    fill_spec(resp.model_spec, servable, sig)
    sv.regression_result(servable.run_examples(sig, examples), len(examples), resp.result)
    return resp


def multi_inference(srv: Backend, request):
    """Classify / regress tasks on one model sharing one ``inputs`` tensor."""
    if not request.tasks:
        raise invalid("MultiInferenceRequest must contain at least one task.")
    names, sigs = set(), []
    for task in request.tasks:
        if not task.model_spec.name:
            raise invalid("Found ModelSpec with an empty model name.")
        names.add(task.model_spec.name)
        if len(names) > 1:
            raise invalid(
                "All ModelSpecs in a MultiInferenceRequest must access the same model name."
            )
        sig = task.model_spec.signature_name or DEFAULT_SIGNATURE
        if sig in sigs:
            raise invalid(f"Duplicate evaluation of signature: {sig}")
        sigs.append(sig)
    servable = _resolve(srv, request.tasks[0].model_spec)
    for task, sig in zip(request.tasks, sigs, strict=True):
        if sig not in servable.signature_defs or sig.startswith("__"):
            raise invalid(f"Requested signature not found in model graph: {sig}")
        if task.method_name == CLASSIFY_METHOD:
            servable.check_classify(sig)
        elif task.method_name == REGRESS_METHOD:
            servable.check_regress(sig)
        else:
            raise ServingError(
                grpc.StatusCode.UNIMPLEMENTED,
                f"Unsupported signature method_name: {task.method_name}",
            )
    if len({servable.signature_defs[s].inputs["inputs"].name for s in sigs}) != 1:
        raise invalid("Input tensor must be the same for all Signatures.")
    examples = sv.serialized_examples(request.input)
    resp = inference_pb2.MultiInferenceResponse()
    for task, sig in zip(request.tasks, sigs, strict=True):
        out = resp.results.add()
        outputs = servable.run_examples(sig, examples)
        if task.method_name == CLASSIFY_METHOD:
            sv.classification_result(outputs, len(examples), out.classification_result)
        else:
            sv.regression_result(outputs, len(examples), out.regression_result)
        fill_spec(out.model_spec, servable, sig)
    return resp


def signature_def_map(servable: sv.Servable):
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for k, v in servable.signature_defs.items():
        sig_map.signature_def[k].CopyFrom(v)
    return sig_map


def metadata(srv: Backend, request):
    if not request.HasField("model_spec"):
        raise invalid("Missing ModelSpec")
    if not request.metadata_field:
        raise invalid("GetModelMetadataRequest must specify at least one metadata_field")
    for f in request.metadata_field:
        if f != "signature_def":
            raise invalid(f"Metadata field {f} is not supported")
    servable = _resolve(srv, request.model_spec)
    resp = get_model_metadata_pb2.GetModelMetadataResponse()
    fill_spec(resp.model_spec, servable, None)
    resp.metadata["signature_def"].Pack(signature_def_map(servable))
    return resp


def status(srv: Backend, request):
    version, label = spec_version(request.model_spec)
    return srv.model_status(request.model_spec.name, version, label)


def _call(srv: Backend, fn, request, context, api: str):
    t0 = time.perf_counter()
    name = request.tasks[0].model_spec.name if api == "multi_inference" and request.tasks else ""
    name = name or getattr(getattr(request, "model_spec", None), "name", "")
    try:
        resp = fn(srv, request)
    except ServingError as exc:
        srv.metrics.record(name, api, exc.code.name, time.perf_counter() - t0)
        context.abort(exc.code, exc.message)
    except Exception as exc:  # INTERNAL, as the REST front end answers (not gRPC's UNKNOWN)
        log.exception("gRPC %s failed", api)
        srv.metrics.record(name, api, "INTERNAL", time.perf_counter() - t0)
        context.abort(grpc.StatusCode.INTERNAL, f"Internal: {exc}")
    srv.metrics.record(name, api, "OK", time.perf_counter() - t0)
    return resp


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, server: Backend):
        self._s = server

    def Predict(self, request, context):  # noqa: N802 (gRPC method name)
        return _call(self._s, predict, request, context, "predict")

    def Classify(self, request, context):  # noqa: N802
        return _call(self._s, classify, request, context, "classify")

    def Regress(self, request, context):  # noqa: N802
        return _call(self._s, regress, request, context, "regress")

    def MultiInference(self, request, context):  # noqa: N802
        return _call(self._s, multi_inference, request, context, "multi_inference")

    def GetModelMetadata(self, request, context):  # noqa: N802
        return _call(self._s, metadata, request, context, "metadata")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, server: Backend):
        self._s = server

    def GetModelStatus(self, request, context):  # noqa: N802
        return _call(self._s, status, request, context, "status")


def add_services(server: grpc.Server, srv: Backend) -> None:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(srv), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(srv), server)
