"""KServe canary rollouts against a Kubernetes API stand-in (``kserve_standin_server``)
whose predictor revisions are tfopt's local TF Serving server on the pushed repository.

Each test uses the real ``kubernetes`` client over HTTP; the stand-in plays KServe's
revisions, traffic split and status (``ksvc_reconciler.go``, ``PropagateStatus``).
"""

from __future__ import annotations

import json
import urllib.request

import numpy as np
import pytest
from kserve_standin_server import KServeStandIn

from tfopt._keras import tf
from tfopt.data import input_pipeline, schema
from tfopt.deploy.kserve import config as kc
from tfopt.deploy.kserve import manifest
from tfopt.deploy.kserve.deploy import deploy_kserve
from tfopt.deploy.serving import repository
from tfopt.errors import ConfigError
from tfopt.training import models

STORAGE = "pvc://tfopt-models/repo"


@pytest.fixture(scope="module")
def assets(tmp_path_factory, digits_dir):
    root = tmp_path_factory.mktemp("kserve_models")
    x, _ = input_pipeline.load_arrays(schema.load_info(digits_dir), "test", limit=16)
    good = []
    for i in range(2):
        tf.keras.utils.set_random_seed(i)
        m = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
        good.append(models.save_model(m, str(root / f"m{i}")))

    class NotProbabilities(tf.Module):  # loads and answers, but its rows do not sum to 1
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x")])
        def serve(self, x):
            return {"probabilities": tf.reshape(x, [-1, 64])[:, :10]}

    bad = NotProbabilities()
    tf.saved_model.save(bad, str(root / "bad"), signatures={"serving_default": bad.serve})
    return {"x": x, "good": good, "bad": str(root / "bad")}


@pytest.fixture
def env(tmp_path):
    repo = str(tmp_path / "repo")
    standin = KServeStandIn({STORAGE: repo}).start()
    cfg = kc.KServeConfig(
        model_name="digits",
        serving_base_path=repo,
        storage_uri=STORAGE,
        namespace="default",
        canary_percent=20,
        timeout_s=600,  # a loaded machine may take long to load the model; a hang test sets 1 s
    )
    yield {"standin": standin, "cfg": cfg, "repo": repo}
    standin.stop()


def _deploy(env, assets, model, **kw):
    return deploy_kserve(
        model, assets["x"], env["cfg"], api=env["standin"].api_client(), poll_s=0.05, **kw
    )


def _writes(standin, verb):
    return [body for v, body in standin.bodies if v == verb]


def _predict(url: str, x: np.ndarray) -> np.ndarray:
    req = urllib.request.Request(
        f"{url}/v1/models/digits:predict",
        data=json.dumps({"instances": x.tolist()}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return np.asarray(json.loads(resp.read())["predictions"], np.float32)


def _offline(model: str, x: np.ndarray) -> np.ndarray:
    from tfopt.deploy.serving.infravalidate import offline_predict

    return offline_predict(model, x)


def test_canary_is_promoted_and_a_rerun_adds_no_revision(env, assets):
    st = env["standin"]
    first = _deploy(env, assets, assets["good"][0])
    assert (first.version, first.promoted, first.previous_revision) == (1, True, "")
    assert first.revision == "digits-predictor-00001" and first.smoke_test == "passed"
    assert first.checks["rest_max_abs_diff"] <= 1e-5
    created = _writes(st, "POST")[0]
    assert "canaryTrafficPercent" not in created["spec"]["predictor"]  # a first deploy: 100%
    assert created["spec"]["predictor"]["model"]["storageUri"] == f"{STORAGE}/digits"

    second = _deploy(env, assets, assets["good"][1])
    assert (second.version, second.promoted, second.rolled_back) == (2, True, False)
    assert (second.revision, second.previous_revision) == (
        "digits-predictor-00002",
        "digits-predictor-00001",
    )
    (put,) = _writes(st, "PUT")
    assert put["spec"]["predictor"]["canaryTrafficPercent"] == 20  # rolled out as a canary
    assert put["spec"]["predictor"]["model"]["args"] == [
        "--model_config_file=/mnt/models/tfopt-kserve-2.config"
    ]
    assert _writes(st, "PATCH")[-1] == {"spec": {"predictor": {"canaryTrafficPercent": None}}}
    assert st.traffic("digits") == {"digits-predictor-00002": 100}
    np.testing.assert_allclose(
        _predict(st.url, assets["x"]), _offline(assets["good"][1], assets["x"]), atol=1e-5
    )

    writes = len(st.bodies)
    again = _deploy(env, assets, assets["good"][1])  # a retried step: same content
    assert (again.version, again.created, again.promoted) == (2, False, True)
    assert again.revision == "digits-predictor-00002" and len(st.bodies) == writes
    assert repository.list_versions(env["repo"], "digits") == [1, 2]


def test_canary_that_fails_its_smoke_test_is_rolled_back(env, assets):
    st = env["standin"]
    _deploy(env, assets, assets["good"][0])
    with pytest.raises(kc.KServeError, match="do not sum to 1") as err:
        _deploy(env, assets, assets["bad"])
    assert "traffic rolled back to revision digits-predictor-00001" in str(err.value)
    assert _writes(st, "PATCH")[-1] == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert st.traffic("digits") == {"digits-predictor-00002": 0, "digits-predictor-00001": 100}
    np.testing.assert_allclose(  # the ingress serves the previous version again
        _predict(st.url, assets["x"]), _offline(assets["good"][0], assets["x"]), atol=1e-5
    )
    result = _deploy(env, assets, assets["bad"], raise_on_failure=False)  # a retry: same verdict
    assert (result.rolled_back, result.promoted, result.version) == (True, False, 2)


def test_revision_never_ready_is_rolled_back_with_its_conditions(env, assets):
    st = env["standin"]
    _deploy(env, assets, assets["good"][0])
    st.hang_next = True
    env["cfg"] = kc.KServeConfig(**{**env["cfg"].__dict__, "timeout_s": 1.0})
    with pytest.raises(kc.KServeError) as err:
        _deploy(env, assets, assets["good"][1])
    msg = str(err.value)
    assert "digits-predictor-00002" in msg and "within 1 s" in msg
    assert "PredictorReady=False (RevisionMissing" in msg and "Insufficient nvidia.com/gpu" in msg
    assert "traffic rolled back to revision digits-predictor-00001" in msg
    assert st.traffic("digits") == {"digits-predictor-00001": 100}


def test_failed_first_deploy_deletes_the_inference_service(env, assets):
    st = env["standin"]
    with pytest.raises(kc.KServeError, match="deleted the InferenceService"):
        _deploy(env, assets, assets["bad"])
    assert (
        "DELETE",
        "/apis/serving.kserve.io/v1beta1/namespaces/default/inferenceservices/digits",
    ) in st.calls
    assert st.objects == {}


def test_a_manifest_the_crd_rejects_fails_before_any_request(env, assets):
    env["cfg"] = kc.KServeConfig(**{**env["cfg"].__dict__, "cpu_request": "two cores"})
    with pytest.raises(ConfigError, match=r"CRD schema: \.spec\.predictor\.model\.resources"):
        _deploy(env, assets, assets["good"][0])
    assert env["standin"].calls == []
    assert repository.list_versions(env["repo"], "digits") == []


def test_storage_the_cluster_cannot_read_is_refused_before_deploy(tmp_path):
    with pytest.raises(ConfigError, match="local path the cluster's predictor pods cannot read"):
        kc.KServeConfig(model_name="digits", serving_base_path=str(tmp_path))
    with pytest.raises(ConfigError, match="a local path cannot be read"):
        kc.KServeConfig(
            model_name="digits", serving_base_path=str(tmp_path), storage_uri="/mnt/models"
        )
    assert (
        manifest.inference_service(
            kc.KServeConfig(model_name="digits", serving_base_path="gs://b/r"), "ns", 1
        )["spec"]["predictor"]["model"]["storageUri"]
        == "gs://b/r/digits"
    )
