"""The local server over real gRPC and HTTP on 127.0.0.1: API, bad input, version swaps."""

import http.client
import json
import os
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

from tfopt._keras import tf
from tfopt.data import input_pipeline, schema
from tfopt.deploy.serving import client as clients
from tfopt.deploy.serving import config as sc
from tfopt.deploy.serving import repository, server
from tfopt.training import models

from helpers.waiting import LOADED_DEADLINE_S, wait_until

NAME = "digits"


@pytest.fixture(scope="module")
def env(tmp_path_factory, digits_dir):
    root = tmp_path_factory.mktemp("serving_server")
    info = schema.load_info(digits_dir)
    x, _ = input_pipeline.load_arrays(info, "test", limit=16)
    paths = []
    for i in range(3):
        m = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
        paths.append(models.save_model(m, str(root / f"m{i}")))
    base = str(root / "repo")
    repository.push_model(paths[0], base, NAME, warmup_examples=x)
    srv = server.ModelServer(base, NAME, poll_seconds=0.2, max_request_bytes=64 << 10).start()
    g = clients.GrpcClient(f"127.0.0.1:{srv.grpc_port}")
    r = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}")
    offline = (
        tf.saved_model.load(paths[0])
        .signatures["serving_default"](x=tf.constant(x))["probabilities"]
        .numpy()
    )
    yield {"srv": srv, "g": g, "r": r, "x": x, "base": base, "models": paths, "offline": offline}
    g.close()
    srv.stop()


def _alive(env):
    """The server still answers both APIs correctly."""
    p = env["g"].predict(NAME, env["x"][:2])
    np.testing.assert_allclose(p.outputs["probabilities"], env["offline"][:2], atol=1e-6)
    out = env["r"].predict(NAME, instances=env["x"][:1])
    np.testing.assert_allclose(out["predictions"], env["offline"][:1], atol=1e-6)


def test_binds_loopback_and_serves_status_metadata_predict(env):
    srv, g, r, x = env["srv"], env["g"], env["r"], env["x"]
    assert srv.host == "127.0.0.1"
    assert g.status(NAME) == {1: "AVAILABLE"}
    st = r.status(NAME)
    assert st == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    sigs = clients.signature_defs(g.metadata(NAME))
    assert list(sigs["serving_default"].inputs) == ["x"]
    assert list(sigs["serving_default"].outputs) == ["probabilities"]
    meta = r.metadata(NAME, version=1)
    assert meta["model_spec"] == {"name": NAME, "signature_name": "", "version": "1"}
    sd = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sd["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert sd["method_name"] == "tensorflow/serving/predict"
    p = g.predict(NAME, x, version=1)
    assert p.version == 1
    np.testing.assert_allclose(p.outputs["probabilities"], env["offline"], atol=1e-6)
    rows = r.predict(NAME, instances=x[:3])["predictions"]
    np.testing.assert_allclose(rows, env["offline"][:3], atol=1e-6)
    named_rows = r.predict(NAME, instances=[{"x": v} for v in x[:2].tolist()])["predictions"]
    np.testing.assert_allclose(named_rows, env["offline"][:2], atol=1e-6)
    cols = r.predict(NAME, inputs={"x": x[:2].tolist()}, signature_name="serving_default")
    np.testing.assert_allclose(cols["outputs"], env["offline"][:2], atol=1e-6)
    assert (
        r.request("GET", "/monitoring/prometheus/metrics")[1].count(
            ":tensorflow:serving:request_count"
        )
        >= 2
    )


GRPC_CASES = [
    (
        "unknown model",
        dict(name="nope"),
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Latest(nope)",
    ),
    (
        "unknown version",
        dict(version=42),
        grpc.StatusCode.NOT_FOUND,
        "Servable not found for request: Specific(digits, 42)",
    ),
    (
        "unknown label",
        dict(label="gold"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable version label: gold",
    ),
    (
        "wrong input name",
        dict(inputs="y"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "input tensor alias not found in signature: y. Inputs expected to be in the set {x}.",
    ),
    # Shapes are left to the graph (predict_util.cc checks aliases and dtypes only): 64
    # values in any shape run, as in TF Serving; the model's own Reshape rejects 65.
    (
        "wrong shape",
        dict(shape=(1, 65)),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Input to reshape is a tensor with 65 values, but the requested shape requires a "
        "multiple of 64",
    ),
    (
        "wrong dtype",
        dict(dtype=np.float64),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expects arg[0] to be float but double is provided",
    ),
    (
        "unknown signature",
        dict(signature="nope"),
        grpc.StatusCode.FAILED_PRECONDITION,
        'Serving signature key "nope" not found.',
    ),
]


@pytest.mark.parametrize(
    ("case", "kw", "code", "message"), GRPC_CASES, ids=[c[0] for c in GRPC_CASES]
)
def test_grpc_bad_requests(env, case, kw, code, message):
    x = env["x"][:1]
    if "shape" in kw:
        x = np.zeros(kw["shape"], np.float32)
    if "dtype" in kw:
        x = x.astype(kw["dtype"])
    with pytest.raises(grpc.RpcError) as err:
        env["g"].predict(
            kw.get("name", NAME),
            {kw.get("inputs", "x"): x},
            version=kw.get("version"),
            label=kw.get("label"),
            signature_name=kw.get("signature", "serving_default"),
        )
    assert err.value.code() == code
    assert message in err.value.details()
    _alive(env)


def test_grpc_status_errors_and_oversized_message(env):
    g = env["g"]
    with pytest.raises(grpc.RpcError) as err:
        g.status("nope")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Could not find any versions of model nope" in err.value.details()
    with pytest.raises(grpc.RpcError) as err:
        g.status(NAME, version=9)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    big = np.zeros((300, 8, 8, 1), np.float32)  # ~77 KB > the 64 KiB limit
    with pytest.raises(grpc.RpcError) as err:
        g.predict(NAME, big)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    _alive(env)


def _row(x):
    return json.dumps({"instances": x.tolist()})


REST_CASES = [
    (
        "unknown model",
        "POST",
        "/v1/models/nope:predict",
        "X1",
        404,
        "Servable not found for request: Latest(nope)",
    ),
    (
        "unknown version",
        "POST",
        "/v1/models/digits/versions/42:predict",
        "X1",
        404,
        "Servable not found for request: Specific(digits, 42)",
    ),
    (
        "unknown label",
        "POST",
        "/v1/models/digits/labels/gold:predict",
        "X1",
        400,
        "Unrecognized servable version label: gold",
    ),
    (
        "status unknown model",
        "GET",
        "/v1/models/nope",
        None,
        404,
        "Could not find any versions of model nope",
    ),
    (
        "status unknown version",
        "GET",
        "/v1/models/digits/versions/42",
        None,
        404,
        "Could not find version 42 of model digits",
    ),
    ("metadata unknown model", "GET", "/v1/models/nope/metadata", None, 404, "Servable not found"),
    (
        "wrong input name",
        "POST",
        "/v1/models/digits:predict",
        json.dumps({"inputs": {"y": [[0.0]]}}),
        400,
        "input tensor alias not found in signature: y",
    ),
    (
        "wrong shape",
        "POST",
        "/v1/models/digits:predict",
        json.dumps({"instances": [[1.0, 2.0]]}),
        400,
        "Input to reshape is a tensor with 2 values, but the requested shape requires a "
        "multiple of 64",
    ),
    (
        "wrong dtype",
        "POST",
        "/v1/models/digits:predict",
        json.dumps({"instances": [[["a"] * 1] * 8] * 8}),
        400,
        "is not of expected type: float",
    ),
    (
        "ragged",
        "POST",
        "/v1/models/digits:predict",
        json.dumps({"instances": [[1.0], [1.0, 2.0]]}),
        400,
        "Encountered list at unexpected size: 2 at level: 1 expected size: 1",
    ),
    (
        "malformed JSON",
        "POST",
        "/v1/models/digits:predict",
        "instances = [1, 2]",
        400,
        "JSON Parse error",
    ),
    (
        "empty body",
        "POST",
        "/v1/models/digits:predict",
        "",
        400,
        "JSON Parse error: The document is empty",
    ),
    (
        "no instances or inputs",
        "POST",
        "/v1/models/digits:predict",
        "{}",
        400,
        "Missing 'inputs' or 'instances' key",
    ),
    (
        "both formats",
        "POST",
        "/v1/models/digits:predict",
        json.dumps({"instances": [1], "inputs": [1]}),
        400,
        "only one of 'inputs' or 'instances'",
    ),
    (
        "signature_name not a string",
        "POST",
        "/v1/models/digits:predict",
        json.dumps({"signature_name": 100, "instances": [1]}),
        400,
        "'signature_name' key must be a string value.",
    ),
    ("malformed path", "GET", "/v1/models/digits/versions/abc", None, 400, "Malformed request"),
    ("missing model name", "GET", "/v1/models", None, 400, "Missing model name"),
    ("predict with GET", "GET", "/v1/models/digits:predict", None, 400, "Malformed request"),
    ("not an API path", "GET", "/index.html", None, 404, "Not found"),
]


@pytest.mark.parametrize(
    ("case", "method", "path", "body", "status", "message"),
    REST_CASES,
    ids=[c[0] for c in REST_CASES],
)
def test_rest_bad_requests(env, case, method, path, body, status, message):
    if body == "X1":
        body = _row(env["x"][:1])
    got, payload = env["r"].request(method, path, body.encode() if body is not None else None)
    assert got == status
    assert set(payload) == {"error"}
    assert message in payload["error"]
    _alive(env)


def test_rest_oversized_payload_and_missing_length(env):
    srv = env["srv"]
    conn = http.client.HTTPConnection("127.0.0.1", srv.rest_port, timeout=clients.DEFAULT_TIMEOUT_S)
    body = _row(np.zeros((200, 8, 8, 1), np.float32)).encode()
    assert len(body) > srv.max_request_bytes
    conn.request("POST", f"/v1/models/{NAME}:predict", body=body)
    resp = conn.getresponse()
    assert resp.status == 413
    assert "exceeds the limit" in json.loads(resp.read())["error"]
    conn.close()
    import socket

    with socket.create_connection(
        ("127.0.0.1", srv.rest_port), timeout=clients.DEFAULT_TIMEOUT_S
    ) as s:
        s.sendall(b"POST /v1/models/digits:predict HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(200).startswith(b"HTTP/1.1 411")
    _alive(env)


def test_labels_from_models_config(env):
    base, srv = env["base"], env["srv"]
    cfg = os.path.join(base, sc.MODELS_CONFIG)
    sc.write_model_config(
        cfg,
        [
            sc.ModelEntry(
                NAME,
                os.path.join(base, NAME),
                policy="specific",
                versions=(1,),
                labels=(("stable", 1),),
            )
        ],
    )
    try:
        srv.poll_once()
        assert env["g"].predict(NAME, env["x"][:1], label="stable").version == 1
        out = env["r"].predict(NAME, instances=env["x"][:1], label="stable")
        np.testing.assert_allclose(out["predictions"], env["offline"][:1], atol=1e-6)
        assert env["r"].status(NAME, label="stable")["model_version_status"][0]["version"] == "1"
    finally:
        os.remove(cfg)
        srv.poll_once()


@pytest.mark.slow
def test_version_swap_under_load_has_no_failed_requests(env):
    srv, x = env["srv"], env["x"]
    stop = threading.Event()
    failures, versions, counts = [], set(), [0]
    lock = threading.Lock()

    def worker(kind):
        g = clients.GrpcClient(f"127.0.0.1:{srv.grpc_port}")
        r = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}")
        deadline = time.monotonic() + 5 * LOADED_DEADLINE_S  # a guard: the test sets stop
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                if kind == "grpc":
                    v = g.predict(NAME, x[:1]).version
                else:
                    r.predict(NAME, instances=x[:1])
                    v = None
                with lock:
                    counts[0] += 1
                    versions.add(v)
            except Exception as exc:  # any failure is a test failure
                with lock:
                    failures.append(repr(exc))
        g.close()
        r.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in ["grpc"] * 4 + ["rest"] * 4]
    for t in threads:
        t.start()
    try:
        # Wait for events, not for time: a loaded CI machine may answer nothing in 0.5 s.
        # A failed request ends a wait early; the assertions below then report it.
        wait_until(lambda: failures or 1 in versions, "a gRPC answer from version 1")
        pushed = repository.push_model(env["models"][1], env["base"], NAME, warmup_examples=x)
        assert pushed.version == 2
        wait_until(
            lambda: failures or env["g"].status(NAME).get(1) == "END",
            "version 1 to be unloaded once version 2 is loaded",
        )
        wait_until(
            lambda: failures or (2 in versions and counts[0] > 50),
            "gRPC answers from version 2 and over 50 answered requests",
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert failures == []
    assert env["g"].status(NAME) == {2: "AVAILABLE", 1: "END"}
    assert {1, 2} <= versions
    assert counts[0] > 50
    assert srv.resolve(NAME).warmup_requests == len(x)


@pytest.mark.slow
def test_cli_serve_subprocess(env, tmp_path):
    base = tmp_path / "repo"
    repository.push_model(env["models"][2], str(base), NAME)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tfopt.cli",
            "serve",
            "--model-base-path",
            str(base),
            "--model-name",
            NAME,
            "--grpc-port",
            "0",
            "--rest-port",
            "0",
            "--poll-seconds",
            "0.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = ""
        deadline = time.monotonic() + 90
        while not line.startswith("serving") and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "tfopt serve exited early"
        fields = dict(f.split("=", 1) for f in line.split()[1:])
        assert fields["grpc"].startswith("127.0.0.1:")
        with clients.GrpcClient(fields["grpc"]) as g:
            assert g.status(NAME) == {1: "AVAILABLE"}
        r = clients.RestClient("http://" + fields["rest"])
        assert len(r.predict(NAME, instances=env["x"][:2])["predictions"]) == 2
        r.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_cli_serve_rejects_missing_base_path(tmp_path, capsys):
    from tfopt import cli

    assert (
        cli.main(["serve", "--model-base-path", str(tmp_path / "missing"), "--model-name", NAME])
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
