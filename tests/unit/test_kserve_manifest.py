"""The InferenceService tfopt writes, checked against the vendored KServe CRD schema."""

from __future__ import annotations

import copy

import pytest

from tfopt.deploy.kserve import config as kc
from tfopt.deploy.kserve import manifest, schema
from tfopt.deploy.serving import config as sc
from tfopt.errors import ConfigError


def _cfg(**kw) -> kc.KServeConfig:
    return kc.KServeConfig(**{"model_name": "digits", "serving_base_path": "gs://b/repo", **kw})


def test_schema_records_the_kserve_version_it_comes_from():
    src = schema.source()
    assert (src["project"], src["version"]) == ("KServe", "v0.20.0")
    assert (src["group"], src["apiVersion"], src["kind"]) == (
        "serving.kserve.io",
        "v1beta1",
        "InferenceService",
    )


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
@pytest.mark.parametrize("canary", [None, 10])
def test_the_manifest_tfopt_writes_validates_against_the_crd_schema(variant, canary):
    doc = manifest.inference_service(_cfg(variant=variant), "team-a", 7, "f00d", canary)
    assert schema.errors(doc) == []
    pred = doc["spec"]["predictor"]
    assert pred["model"]["modelFormat"] == {"name": "tensorflow", "version": "2"}
    assert pred["model"]["storageUri"] == "gs://b/repo/digits"
    assert pred["model"]["args"] == ["--model_config_file=/mnt/models/tfopt-kserve-7.config"]
    assert pred.get("canaryTrafficPercent") == canary
    assert doc["metadata"]["annotations"][manifest.TAG_ROUTING] == "true"
    if variant == "gpu":
        assert pred["model"]["runtimeVersion"].endswith("-gpu")
        assert pred["model"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pred["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
        assert pred["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    else:
        assert "nodeSelector" not in pred and "nvidia.com/gpu" not in str(pred)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (lambda d: d["spec"]["predictor"]["model"].update(storageURI="x"), "storageURI: unknown"),
        (lambda d: d["spec"]["predictor"].update(canaryTraffic=10), "canaryTraffic: unknown"),
        (lambda d: d["spec"].update(predictors={}), ".spec.predictors: unknown"),
        (lambda d: d["spec"]["predictor"].update(minReplicas="1"), "expected integer"),
        (lambda d: d["spec"]["predictor"].update(canaryTrafficPercent=101), "outside [0, 100]"),
        (lambda d: d["spec"]["predictor"]["model"].pop("modelFormat") and
         d["spec"]["predictor"]["model"].update(modelFormat={}), "name: required"),
        (lambda d: d["spec"]["predictor"].update(scaleMetric="qps"), "is not one of"),
        (lambda d: d["spec"]["predictor"]["model"]["resources"]["limits"].update(cpu="2 cores"),
         "resources.limits.cpu"),
        (lambda d: d.update(apiVersion="serving.kserve.io/v1alpha1"), "apiVersion"),
    ],
)  # fmt: skip
def test_a_field_or_value_the_crd_does_not_have_fails_with_its_path(edit, problem):
    doc = copy.deepcopy(manifest.inference_service(_cfg(), "ns", 1))
    edit(doc)
    with pytest.raises(ConfigError, match="KServe v0.20.0") as err:
        schema.validate(doc)
    assert problem in str(err.value)


def test_the_version_config_pins_one_version_under_the_mount():
    (entry,) = sc.parse_model_config(manifest.version_config(_cfg(model_name="My_Model"), 3))
    assert (entry.name, entry.base_path, entry.policy, entry.versions) == (
        "my-model",
        "/mnt/models",
        "specific",
        (3,),
    )


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"serving_base_path": "/data/repo"}, "local path the cluster"),
        ({"serving_base_path": "/data/repo", "storage_uri": "file:///data"}, "a local path"),
        ({"storage_uri": "ftp://host/x"}, "scheme 'ftp'"),
        ({"model_name": "9lives"}, "InferenceService name"),
        ({"model_name": "x" * 40}, "at most 36"),
        ({"canary_percent": 100}, "canary_percent"),
        ({"variant": "tpu"}, "variant"),
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas"),
    ],
)
def test_bad_settings_fail_naming_the_field(kw, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(**kw)


def test_pvc_storage_for_a_mounted_repository():
    cfg = _cfg(serving_base_path="/mnt/repo", storage_uri="pvc://models/repo/")
    assert cfg.storage_uri_of_model() == "pvc://models/repo/digits"
    assert cfg.name == "digits"
