"""The local server under stress and hostile input on 127.0.0.1.

A version that fails to load is reported (GetModelStatus: END with an error),
retried a bounded number of times and skipped while the serving version stays
up; generated malformed REST payloads always get a TF Serving-shaped answer.
"""

import http.client
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfopt.data import input_pipeline, schema
from tfopt.deploy.serving import client as clients
from tfopt.deploy.serving import repository, server
from tfopt.errors import ModelError
from tfopt.training import models

NAME = "digits"
ROOT = Path(__file__).resolve().parents[2]


def _stress_module():
    spec = importlib.util.spec_from_file_location(
        "tfopt_bench_stress", ROOT / "benchmarks" / "stress.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def env(tmp_path_factory, digits_dir):
    root = tmp_path_factory.mktemp("reliability_serving")
    info = schema.load_info(digits_dir)
    x, _ = input_pipeline.load_arrays(info, "test", limit=8)
    paths = []
    for i in range(2):
        m = models.build_model(models.ModelConfig(arch="mlp", width=4, depth=1), (8, 8, 1), 10)
        paths.append(models.save_model(m, str(root / f"m{i}")))
    base = str(root / "repo")
    repository.push_model(paths[0], base, NAME)
    srv = server.ModelServer(
        base,
        NAME,
        poll_seconds=3600,
        max_request_bytes=64 << 10,
        max_load_retries=2,
        load_retry_interval_s=0.0,
    ).start()
    yield {"srv": srv, "x": x, "base": base, "models": paths, "root": root}
    srv.stop()


def _post(port: int, body: bytes, path: str = f"/v1/models/{NAME}:predict"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_failing_version_is_reported_retried_bounded_and_skipped(env):
    srv, base = env["srv"], env["base"]
    stress = _stress_module()
    bad = stress._broken_version(env["models"][1], base, 2)
    for _ in range(6):  # more polls than retries: attempts stay bounded
        srv.poll_once()
    status = srv.model_status(NAME)
    states = {
        s.version: (s.state, s.status.error_code, s.status.error_message)
        for s in status.model_version_status
    }
    assert states[1][0] == 30  # AVAILABLE: still serving
    assert states[2][0] == 50 and states[2][1] == 3 and "IndexError" in states[2][2]
    assert srv._models[NAME].failed[2][1] == 3  # 1 load + 2 retries, then given up
    with clients.GrpcClient(f"127.0.0.1:{srv.grpc_port}") as g:
        assert g.status(NAME) == {2: "END", 1: "AVAILABLE"}
        assert g.predict(NAME, env["x"][:2]).version == 1
    # The broken directory is replaced by a good push under a new number: it loads.
    shutil.rmtree(bad)
    srv.poll_once()
    assert 2 not in srv._models[NAME].failed  # forgotten once gone from disk
    pushed = repository.push_model(env["models"][1], base, NAME)
    srv.poll_once()
    assert srv.resolve(NAME).version == pushed.version == 2


def test_rest_bodies_over_the_limit_get_413_and_server_survives(env):
    srv = env["srv"]
    status, body = _post(srv.rest_port, b'{"instances": [' + b"0," * 40_000 + b"0]}")
    assert status == 413 and "exceeds the limit" in json.loads(body)["error"]
    status, body = _post(srv.rest_port, b"[" * 20_000 + b"]" * 20_000)
    assert status == 400 and "JSON Parse error" in json.loads(body)["error"]
    status, body = _post(srv.rest_port, json.dumps({"instances": env["x"][:1].tolist()}).encode())
    assert status == 200 and len(json.loads(body)["predictions"]) == 1


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.sampled_from(["instances", "inputs", "x", "signature_name", "y", ""])
            | st.text(max_size=4),
            inner,
            max_size=4,
        )
    ),
    max_leaves=30,
)
_payload = (
    st.builds(json.dumps, _json).map(str.encode)
    | st.binary(max_size=200)
    | st.builds(
        lambda v, k: json.dumps({k: v}).encode(), _json, st.sampled_from(["instances", "inputs"])
    )
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=_payload)
def test_generated_rest_payloads_get_tf_serving_shaped_answers(env, body):
    status, raw = _post(env["srv"].rest_port, body)
    doc = json.loads(raw)
    if status == 200:
        # Shapes are left to the graph (as TF Serving does): an empty batch runs too.
        preds = np.asarray(doc["predictions" if "predictions" in doc else "outputs"], np.float32)
        assert preds.size == 0 or (preds.ndim == 2 and preds.shape[1] == 10)
    else:
        assert status in (400, 404), (status, doc)
        assert set(doc) == {"error"} and isinstance(doc["error"], str) and doc["error"]


def test_server_still_serves_after_generated_payloads(env):
    with clients.GrpcClient(f"127.0.0.1:{env['srv'].grpc_port}") as g:
        assert g.predict(NAME, env["x"][:3]).outputs["probabilities"].shape == (3, 10)


@pytest.mark.parametrize("name", ["../x", "..", "a/../../b", ".hidden", "a b", "", "x\0y"])
def test_traversal_and_odd_model_names_are_rejected(env, name, tmp_path):
    with pytest.raises(ModelError, match="model_name"):
        server.ModelServer(env["base"], name)
    with pytest.raises(ModelError, match="model_name"):
        repository.push_model(env["models"][0], str(tmp_path / "repo"), name)
    assert not (tmp_path / "repo").exists() and not (tmp_path / "x").exists()


def test_cli_serve_rejects_traversal_and_binds_loopback_by_default(env, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfopt.cli",
            "serve",
            "--model-base-path",
            env["base"],
            "--model-name",
            "../../etc",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "model_name='../../etc' is not allowed" in proc.stderr
    assert env["srv"].host == "127.0.0.1"
    assert server.ModelServer.__init__.__defaults__[1] == "127.0.0.1"  # host default


def test_stress_swaps_malformed_and_broken_version(tmp_path):
    r = _stress_module().run_stress(
        seconds=4.0,
        clients=3,
        malformed=0.15,
        swap_every=1.0,
        load_retries=1,
        retry_interval=0.2,
        workdir=str(tmp_path),
    )
    assert r["well_formed"] > 50 and r["malformed"] > 5
    assert r["well_formed_failed"] == 0
    assert r["malformed_4xx"] == r["malformed"] and r["malformed_5xx_or_dropped"] == 0
    assert r["swaps"] >= 3 and r["requests_during_swaps"] > 0
    bv = r["broken_version"]
    assert r["broken_status"]["state"] == 50 and r["broken_status"]["error_code"] == 3
    assert r["broken_status"]["attempts"] == 2
    assert bv not in r["served_while_broken"] and r["served_while_broken"]
    assert r["final_version"] > bv and r["versions_known"][r["final_version"]] == 30
    assert os.path.isdir(tmp_path / "repo" / NAME / str(bv))
