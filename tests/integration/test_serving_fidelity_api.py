"""Predict and GetModelMetadata of the local server against TF Serving's behaviour.

Models: TF Serving's half_plus_two shape (``serving_fidelity_models``), served from
a zero-padded version folder. Sources (tensorflow/serving): predict requests
``servables/tensorflow/predict_util.cc`` (aliases, input count, output_filter,
default signature; shapes are left to the graph), dtype errors from the session
(``Expects arg[i] to be ...``), REST formats ``util/json_tensor.cc``, URLs
``model_servers/http_rest_api_util.cc``, metadata
``servables/tensorflow/get_model_metadata_impl.cc`` and ``http_rest_api_util.cc``
(``ToJsonString``).
"""

from __future__ import annotations

import base64

import grpc
import numpy as np
import pytest
import serving_fidelity_models as fm

from tfopt.deploy.serving import client as clients
from tfopt.deploy.serving import config as sc
from tfopt.deploy.serving import server

NAME, V = "half_plus_two", 123


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("fidelity_api")
    fm.half_plus_two(str(root / NAME / "00000123"))
    fm.half_plus_two_tf2(str(root / "tf2" / "1"))
    sc.write_model_config(
        str(root / "models.config"),
        [
            sc.ModelEntry(NAME, str(root / NAME), labels=(("stable", V),)),
            sc.ModelEntry("tf2", str(root / "tf2")),
        ],
    )
    srv = server.ModelServer(str(root), [], poll_seconds=60).start()
    g = clients.GrpcClient(f"127.0.0.1:{srv.grpc_port}")
    r = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}")
    yield {"srv": srv, "g": g, "r": r}
    g.close()
    r.close()
    srv.stop()


def _rest(env, body, path=f"/v1/models/{NAME}:predict"):
    return env["r"].request("POST", path, body)


def _grpc_error(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value.code(), err.value.details()


def test_shapes_are_left_to_the_graph(env):
    """A [3] input to a [-1, 1] signature runs (TF Serving's README example:
    {"instances": [1.0, 2.0, 5.0]} -> {"predictions": [2.5, 3.0, 4.5]})."""
    assert _rest(env, {"instances": [1.0, 2.0, 5.0]}) == (200, {"predictions": [2.5, 3.0, 4.5]})
    p = env["g"].predict(NAME, np.array([1.0, 2.0, 5.0], np.float32))
    np.testing.assert_allclose(p.outputs["y"], [2.5, 3.0, 4.5])
    assert p.version == V


def test_float_outputs_are_written_as_tf_serving_writes_them(env):
    """json_tensor.cc WriteDecimal: a float32 is written in its shortest round-trip form
    (2.05, not the double 2.049999952316284)."""
    code, raw = env["r"].request("POST", f"/v1/models/{NAME}:predict", {"instances": [[0.1]]})
    assert (code, raw) == (200, {"predictions": [[2.05]]})


def test_default_signature_and_echoed_model_spec(env):
    """An empty signature_name means serving_default; the response's model_spec names the
    model, the version that answered and the signature (util.cc MakeModelSpec)."""
    from tensorflow_serving.apis import predict_pb2

    from tfopt._keras import tf

    req = predict_pb2.PredictRequest()
    req.model_spec.name = NAME
    req.inputs["x"].CopyFrom(tf.make_tensor_proto(np.array([[4.0]], np.float32)))
    resp = env["g"].predict_request(req)
    assert (resp.model_spec.name, resp.model_spec.version.value) == (NAME, V)
    assert resp.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(resp.outputs["y"]).tolist() == [[4.0]]


@pytest.mark.parametrize(
    ("inputs", "code", "message"),
    [
        (
            {"z": np.zeros((1, 1), np.float32)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "input tensor alias not found in signature: z. Inputs expected to be in the set {x}.",
        ),
        (
            {"x": np.zeros((1, 1), np.float32), "z": np.zeros((1, 1), np.float32)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "input size does not match signature: 2!=1 len({x,z}) != len({x}). Sent extra: "
            "{z}. Missing but required: {}.",
        ),
        (
            {"x": np.zeros((1, 1), np.int64)},
            grpc.StatusCode.INVALID_ARGUMENT,
            "Expects arg[0] to be float but int64 is provided",
        ),
    ],
    ids=["alias", "extra-input", "dtype"],
)
def test_alias_count_and_dtype_checks(env, inputs, code, message):
    """predict_util.cc VerifyRequestInputsSize / GetInputValues, and the session's dtype
    check, all INVALID_ARGUMENT."""
    assert _grpc_error(lambda: env["g"].predict(NAME, inputs)) == (code, message)


def test_unknown_signature_is_failed_precondition(env):
    """predict_util.cc RunPredict: 'Serving signature key "..." not found.'; the REST path
    fails earlier in GetInfoMap (http_rest_api_handler.cc) with INVALID_ARGUMENT."""
    got = _grpc_error(lambda: env["g"].predict(NAME, np.zeros((1, 1)), signature_name="nope"))
    assert got == (grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.')
    code, doc = _rest(env, {"signature_name": "nope", "instances": [1.0]})
    assert (code, doc) == (
        400,
        {"error": 'Serving signature name: "nope" not found in signature def'},
    )


def test_output_filter(env):
    """predict_util.cc PreProcessPrediction: only the filtered aliases come back; an unknown
    or repeated alias is INVALID_ARGUMENT."""
    x = np.array([[1.0]], np.float32)
    g = env["g"]
    p = g.predict(NAME, x, signature_name="two_outputs", output_filter=["x_again"])
    assert list(p.outputs) == ["x_again"] and p.outputs["x_again"].tolist() == [[1.0]]
    assert sorted(g.predict(NAME, x, signature_name="two_outputs").outputs) == ["x_again", "y"]
    code, msg = _grpc_error(
        lambda: g.predict(NAME, x, signature_name="two_outputs", output_filter=["nope"])
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert msg == (
        "output tensor alias not found in signature: nope Outputs expected to be in the set "
        "{x_again,y}."
    )
    code, msg = _grpc_error(lambda: g.predict(NAME, x, output_filter=["y", "y"]))
    assert (code, msg) == (grpc.StatusCode.INVALID_ARGUMENT, "duplicate output tensor alias: y")


def test_row_and_columnar_formats_with_several_outputs(env):
    """json_tensor.cc: row answers are a list of per-instance objects when there are
    several outputs; columnar answers an object of named outputs."""
    body = {"signature_name": "two_outputs", "instances": [[1.0], [3.0]]}
    assert _rest(env, body) == (
        200,
        {"predictions": [{"x_again": [1.0], "y": [2.5]}, {"x_again": [3.0], "y": [3.5]}]},
    )
    body = {"signature_name": "two_outputs", "inputs": {"x": [[1.0], [3.0]]}}
    assert _rest(env, body) == (200, {"outputs": {"x_again": [[1.0], [3.0]], "y": [[2.5], [3.5]]}})
    assert _rest(env, {"inputs": [[6.0]]}) == (200, {"outputs": [[5.0]]})


def test_strings_b64_and_bytes_outputs(env):
    """json_tensor.cc: a string tensor takes plain strings or {"b64": ...}; an output whose
    alias ends in "_bytes" is written back as {"b64": ...}."""
    raw = b"\x00\xffab"
    body = {
        "signature_name": "strings",
        "instances": [{"b64": base64.b64encode(raw).decode()}, "hello"],
    }
    code, doc = _rest(env, body)
    assert code == 200
    assert doc["predictions"] == [
        {"echo_bytes": {"b64": base64.b64encode(raw).decode()}, "length": 4},
        {"echo_bytes": {"b64": base64.b64encode(b"hello").decode()}, "length": 5},
    ]
    code, doc = _rest(env, {"signature_name": "strings", "inputs": {"text_bytes": [{"b64": "!!"}]}})
    assert (code, doc) == (400, {"error": "Unable to base64 decode"})


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        ({"instances": [1, 2]}, 200, {"predictions": [2.5, 3.0]}),  # ints into float
        (
            {"instances": ["a"]},
            400,
            {"error": 'JSON Value: "a" Type: String is not of expected type: float'},
        ),
        (
            {"instances": [True]},
            400,
            {"error": "JSON Value: true Type: True is not of expected type: float"},
        ),
        (
            {"instances": [16777217]},
            400,
            {"error": "Cannot convert JSON value: 16777217 to float without loss of precision."},
        ),
        (
            {
                "signature_name": "mask",
                "instances": [{"flag": True, "count": 3}, {"flag": False, "count": 4}],
            },
            200,
            {"predictions": [3, 0]},
        ),
        (
            {"signature_name": "mask", "inputs": {"flag": [1], "count": [3]}},
            400,
            {"error": "JSON Value: 1 Type: Number is not of expected type: bool"},
        ),
        (
            {"signature_name": "mask", "inputs": {"flag": [True], "count": [1.5]}},
            400,
            {"error": "JSON Value: 1.5 Type: Number is not of expected type: int64"},
        ),
    ],
    ids=[
        "int-to-float",
        "string-to-float",
        "bool-to-float",
        "lossy",
        "bool-int64",
        "int-to-bool",
        "float-to-int",
    ],
)
def test_number_bool_string_conversions(env, body, status, answer):
    """json_tensor.cc AddValueToTensor / IsLosslessDecimal / TypeError."""
    assert _rest(env, body) == (status, answer)


@pytest.mark.parametrize(
    ("path", "status", "version"),
    [
        (f"/v1/models/{NAME}/versions/123:predict", 200, V),
        (f"/v1/models/{NAME}/versions/0123:predict", 200, V),
        (f"/v1/models/{NAME}/labels/stable:predict", 200, V),
        (f"/v1/models/{NAME}/versions/7:predict", 404, None),
        (f"/v1/models/{NAME}/versions/99999999999999999999:predict", 400, None),
    ],
    ids=["version", "padded-version", "label", "missing", "overflow"],
)
def test_versions_and_labels_in_urls(env, path, status, version):
    """http_rest_api_util.cc ParseModelInfo (SimpleAtoi; 'Failed to convert version');
    NOT_FOUND 'Servable not found for request: Specific(...)' for a missing version."""
    code, doc = _rest(env, {"instances": [[1.0]]}, path)
    assert code == status
    if status == 200:
        assert doc == {"predictions": [[2.5]]}
    elif status == 404:
        assert doc == {"error": f"Servable not found for request: Specific({NAME}, 7)"}
    else:
        assert doc == {"error": "Failed to convert version: 99999999999999999999 to numeric."}


def test_versions_and_labels_in_model_spec(env):
    g = env["g"]
    assert g.predict(NAME, np.ones((1, 1), np.float32), version=V).version == V
    assert g.predict(NAME, np.ones((1, 1), np.float32), label="stable").version == V
    code, msg = _grpc_error(lambda: g.predict(NAME, np.ones((1, 1), np.float32), label="gold"))
    assert (code, msg) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: gold",
    )


def test_rest_metadata_is_tf_servings_json(env):
    """http_rest_api_util.cc ToJsonString: model_spec and the unpacked SignatureDefMap,
    printed with proto field names and primitive fields always (dimension sizes as
    int64 strings, "name": "" on every dim, unknown_rank false)."""
    code, doc = env["r"].request("GET", f"/v1/models/{NAME}/versions/{V}/metadata")
    assert code == 200
    assert doc["model_spec"] == {"name": NAME, "signature_name": "", "version": "123"}
    sigs = doc["metadata"]["signature_def"]["signature_def"]
    assert sorted(sigs) == [
        "classify_x_to_y",
        "mask",
        "regress_x2_to_y3",
        "regress_x_to_y",
        "serving_default",
        "strings",
        "two_outputs",
    ]
    assert sigs["serving_default"] == {
        "inputs": {
            "x": {
                "dtype": "DT_FLOAT",
                "tensor_shape": {
                    "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
                    "unknown_rank": False,
                },
                "name": "x:0",
            }
        },
        "outputs": {
            "y": {
                "dtype": "DT_FLOAT",
                "tensor_shape": {
                    "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
                    "unknown_rank": False,
                },
                "name": "y:0",
            }
        },
        "method_name": "tensorflow/serving/predict",
        "defaults": {},
    }
    assert sigs["classify_x_to_y"]["method_name"] == "tensorflow/serving/classify"
    assert sigs["regress_x_to_y"]["method_name"] == "tensorflow/serving/regress"
    assert sigs["mask"]["inputs"]["flag"]["dtype"] == "DT_BOOL"
    assert sigs["mask"]["inputs"]["count"]["dtype"] == "DT_INT64"
    assert sigs["strings"]["inputs"]["text_bytes"]["dtype"] == "DT_STRING"
    assert sigs["mask"]["inputs"]["flag"]["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]


def test_grpc_metadata_and_tf2_init_op(env):
    """get_model_metadata_impl.cc: the whole signature_def map (a TF2 export's
    __saved_model_init_op included), model_spec name + version, no signature_name;
    'Missing ModelSpec' and unsupported metadata fields are INVALID_ARGUMENT."""
    from tensorflow.core.framework import types_pb2 as tf_types
    from tensorflow_serving.apis import get_model_metadata_pb2

    g = env["g"]
    resp = g.metadata("tf2")
    assert (resp.model_spec.name, resp.model_spec.version.value) == ("tf2", 1)
    assert resp.model_spec.signature_name == ""
    sigs = clients.signature_defs(resp)
    assert sorted(sigs) == ["__saved_model_init_op", "serving_default"]
    assert sigs["serving_default"].inputs["x"].dtype == tf_types.DT_FLOAT
    assert [d.size for d in sigs["serving_default"].inputs["x"].tensor_shape.dim] == [-1, 1]
    req = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    code, msg = _grpc_error(lambda: g._predict.GetModelMetadata(req))
    assert (code, msg) == (grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    req.model_spec.name = NAME
    req.metadata_field[:] = ["nope"]
    code, msg = _grpc_error(lambda: g._predict.GetModelMetadata(req))
    assert (code, msg) == (grpc.StatusCode.INVALID_ARGUMENT, "Metadata field nope is not supported")
