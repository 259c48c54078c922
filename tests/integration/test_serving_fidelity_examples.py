"""Classify, Regress and MultiInference of the local server, over gRPC and REST.

The half_plus_two model (``serving_fidelity_models``) has TF Serving's
``classify_x_to_y`` / ``regress_x_to_y`` / ``regress_x2_to_y3`` signatures on
serialized ``tf.Example``. Sources (tensorflow/serving): ``servables/tensorflow/
classifier.cc`` and ``regressor.cc`` (signature checks, result shapes),
``classification_service.cc`` / ``regression_service.cc`` (model_spec echoed),
``multi_inference.cc`` (task checks), ``util.cc`` (Input -> examples, context merged,
"Input is empty."), ``util/json_tensor.cc`` (REST ``examples`` / ``context`` and
``{"results": ...}``), ``predict_util.cc`` (Predict runs any signature: the method
name check is off by default).
"""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import serving_fidelity_models as fm

from tfopt._keras import tf
from tfopt.deploy.serving import client as clients
from tfopt.deploy.serving import server

NAME, V = "half_plus_two", 7
CLASSIFY, REGRESS = "tensorflow/serving/classify", "tensorflow/serving/regress"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("fidelity_examples")
    fm.half_plus_two(str(root / NAME / "0007"))
    srv = server.ModelServer(str(root), NAME, poll_seconds=60).start()
    g = clients.GrpcClient(f"127.0.0.1:{srv.grpc_port}")
    r = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}")
    yield {"srv": srv, "g": g, "r": r}
    g.close()
    r.close()
    srv.stop()


def _ex(**feats) -> tf.train.Example:
    e = tf.train.Example()
    for k, v in feats.items():
        e.features.feature[k].float_list.value.extend(v)
    return e


def _err(fn) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as err:
        fn()
    return err.value.code(), err.value.details()


def test_grpc_classify(env):
    resp = env["g"].classify(NAME, [_ex(x=[1.0]), _ex(x=[4.0])], signature_name="classify_x_to_y")
    assert (resp.model_spec.name, resp.model_spec.version.value) == (NAME, V)
    assert resp.model_spec.signature_name == "classify_x_to_y"
    got = [[(c.label, c.score) for c in cl.classes] for cl in resp.result.classifications]
    assert got == [[("low", 2.5), ("high", 5.0)], [("low", 4.0), ("high", 8.0)]]


def test_rest_classify_and_regress(env):
    r = env["r"]
    doc = r.classify(NAME, [{"x": 1.0}, {"x": [4.0]}], signature_name="classify_x_to_y")
    assert doc == {"results": [[["low", 2.5], ["high", 5.0]], [["low", 4.0], ["high", 8.0]]]}
    assert r.regress(NAME, [{"x": [1.0]}, {"x": 4.0}], signature_name="regress_x_to_y") == {
        "results": [2.5, 4.0]
    }
    assert r.regress(NAME, [{"x": 1.0}], version=V, signature_name="regress_x_to_y") == {
        "results": [2.5]
    }


def test_grpc_regress_with_context(env):
    """example_list_with_context: the context's features go into every example, an
    example's own feature wins (util.cc serializes context + example)."""
    resp = env["g"].regress(
        NAME,
        [_ex(x=[1.0]), _ex(x=[1.0], x2=[10.0])],
        signature_name="regress_x2_to_y3",
        context=_ex(x2=[4.0]),
    )
    assert [v.value for v in resp.result.regressions] == [5.0, 8.0]  # 0.5 * x2 + 3
    assert resp.model_spec.signature_name == "regress_x2_to_y3"
    doc = env["r"].regress(
        NAME, [{"x": 1.0}], context={"x2": [2.0]}, signature_name="regress_x2_to_y3"
    )
    assert doc == {"results": [4.0]}


def test_multi_inference(env):
    resp = env["g"].multi_inference(
        NAME,
        [("classify_x_to_y", CLASSIFY), ("regress_x_to_y", REGRESS)],
        [_ex(x=[2.0])],
    )
    assert len(resp.results) == 2
    cls = resp.results[0].classification_result.classifications[0].classes
    assert [(c.label, c.score) for c in cls] == [("low", 3.0), ("high", 6.0)]
    assert [v.value for v in resp.results[1].regression_result.regressions] == [3.0]
    assert [(s.model_spec.signature_name, s.model_spec.version.value) for s in resp.results] == [
        ("classify_x_to_y", V),
        ("regress_x_to_y", V),
    ]


@pytest.mark.parametrize(
    ("tasks", "code", "message"),
    [
        (
            [("regress_x_to_y", REGRESS), ("regress_x_to_y", REGRESS)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Duplicate evaluation of signature: regress_x_to_y",
        ),
        (
            [("nope", REGRESS)],
            grpc.StatusCode.INVALID_ARGUMENT,
            "Requested signature not found in model graph: nope",
        ),
        (
            [("serving_default", "tensorflow/serving/predict")],
            grpc.StatusCode.UNIMPLEMENTED,
            "Unsupported signature method_name: tensorflow/serving/predict",
        ),
    ],
    ids=["duplicate", "missing", "predict-task"],
)
def test_multi_inference_task_checks(env, tasks, code, message):
    assert _err(lambda: env["g"].multi_inference(NAME, tasks, [_ex(x=[1.0])])) == (code, message)


def test_multi_inference_needs_one_model(env):
    from tensorflow_serving.apis import inference_pb2

    req = inference_pb2.MultiInferenceRequest()
    for name in (NAME, "other"):
        t = req.tasks.add()
        t.model_spec.name, t.model_spec.signature_name = name, "regress_x_to_y"
        t.method_name = REGRESS
    clients.fill_input(req.input, [_ex(x=[1.0])])
    code, msg = _err(lambda: env["g"]._predict.MultiInference(req))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert msg == "All ModelSpecs in a MultiInferenceRequest must access the same model name."


@pytest.mark.parametrize(
    ("call", "signature", "examples", "message"),
    [
        (
            "classify",
            "serving_default",
            [{"x": 1.0}],
            "Expected classification signature method_name to be tensorflow/serving/classify."
            " Was: tensorflow/serving/predict",
        ),
        (
            "regress",
            "classify_x_to_y",
            [{"x": 1.0}],
            "Expected regression signature method_name to be tensorflow/serving/regress."
            " Was: tensorflow/serving/classify",
        ),
        ("regress", "nope", [{"x": 1.0}], "No signature was found with the name: nope"),
        ("regress", "regress_x_to_y", [], "Input is empty."),
    ],
    ids=["classify-on-predict", "regress-on-classify", "unknown-signature", "empty"],
)
def test_signature_and_input_checks(env, call, signature, examples, message):
    """classifier.cc / regressor.cc Get*SignatureDef and util.cc: INVALID_ARGUMENT (400)."""
    with pytest.raises(clients.RestError) as err:
        getattr(env["r"], call)(NAME, examples, signature_name=signature)
    assert (err.value.status, err.value.message) == (400, message)
    ex = [_ex(**{k: [float(v)] for k, v in e.items()}) for e in examples]
    code, msg = _err(lambda: getattr(env["g"], call)(NAME, ex, signature_name=signature))
    assert (code, msg) == (grpc.StatusCode.INVALID_ARGUMENT, message)


def test_rest_examples_body_errors(env):
    r = env["r"]
    code, doc = r.request("POST", f"/v1/models/{NAME}:regress", {"instances": [1.0]})
    assert code == 400 and "'examples'" in doc["error"]
    code, doc = r.request("POST", f"/v1/models/{NAME}:regress", {"examples": [1.0]})
    assert (code, doc) == (400, {"error": "Example must be JSON object but got JSON Number"})
    # A JSON integer is an int64_list feature, which the float feature spec refuses in
    # the graph (INVALID_ARGUMENT from ParseExample, as in TF Serving's session).
    code, doc = r.request(
        "POST",
        f"/v1/models/{NAME}:regress",
        {"signature_name": "regress_x_to_y", "examples": [{"x": 4}]},
    )
    assert code == 400
    assert doc["error"].startswith("Name: <unknown>, Key: x, Index: 0.  Data types don't match.")


def test_predict_runs_an_example_signature(env):
    """Predict takes any signature (the method name check is off by default)."""
    serialized = np.array([_ex(x=[6.0]).SerializeToString()], dtype=object)
    p = env["g"].predict(NAME, {"inputs": serialized}, signature_name="regress_x_to_y")
    assert p.outputs["outputs"].tolist() == [[5.0]]


def test_tfopt_classifier_exports_a_classify_signature(tmp_path):
    """``models.save_model(..., class_names)`` adds a ``classify`` signature (method
    tensorflow/serving/classify) beside serving_default, so :classify answers with the
    dataset's class names and the same scores Predict gives."""
    from tfopt.training import models

    m = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (2, 2, 1), 3)
    models.save_model(m, str(tmp_path / "repo" / "clf" / "1"), class_names=("cat", "dog", "eel"))
    x = np.random.default_rng(0).normal(size=(2, 2, 2, 1)).astype(np.float32)
    with server.ModelServer(str(tmp_path / "repo"), "clf", poll_seconds=60) as srv:
        r = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}")
        meta = r.metadata("clf")["metadata"]["signature_def"]["signature_def"]
        assert meta["classify"]["method_name"] == CLASSIFY
        assert meta["serving_default"]["method_name"] == "tensorflow/serving/predict"
        doc = r.classify(
            "clf", [{"x": row.reshape(-1).tolist()} for row in x], signature_name="classify"
        )
        probs = np.asarray(r.predict("clf", instances=x)["predictions"])
        assert [[c[0] for c in ex] for ex in doc["results"]] == [["cat", "dog", "eel"]] * 2
        np.testing.assert_allclose([[c[1] for c in ex] for ex in doc["results"]], probs, rtol=1e-5)
        r.close()
