"""infra_validate and deploy_tf_serving components through python_func."""

import os

import pytest
import yaml
from kfp import dsl

from tfopt.components.deploy_tf_serving import deploy_tf_serving
from tfopt.components.infra_validate import infra_validate
from tfopt.errors import ModelError
from tfopt.training import models


@pytest.fixture(scope="module")
def assets(tmp_path_factory, digits_dir):
    root = tmp_path_factory.mktemp("serving_components")
    m = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
    models.save_model(m, str(root / "model"))
    return {
        "dataset": dsl.Dataset(uri=digits_dir),
        "model": dsl.Model(uri=str(root / "model")),
    }


def test_infra_validate_component(assets, tmp_path):
    metrics = dsl.Metrics(uri=str(tmp_path / "metrics"))
    out = infra_validate.python_func(
        model=assets["model"],
        dataset=assets["dataset"],
        metrics=metrics,
        model_name="digits",
        num_examples=4,
        latency_requests=5,
    )
    assert out is True and metrics.metadata["reason"] == "ok"
    assert metrics.metadata["infra_blessed"] == 1.0
    assert metrics.metadata["warmup_requests"] == 4.0
    assert metrics.metadata["latency_ms_p50"] > 0
    bad_metrics = dsl.Metrics(uri=str(tmp_path / "m2"))
    bad = infra_validate.python_func(
        model=dsl.Model(uri=str(tmp_path / "none")), dataset=assets["dataset"], metrics=bad_metrics
    )
    assert bad is False and bad_metrics.metadata["reason"]


def test_deploy_component_pushes_smoke_tests_and_writes_manifests(assets, tmp_path):
    manifests = dsl.Artifact(uri=str(tmp_path / "manifests"))
    base = str(tmp_path / "repo")
    out = deploy_tf_serving.python_func(
        model=assets["model"],
        dataset=assets["dataset"],
        manifests=manifests,
        model_base_path=base,
        model_name="digits",
        variant="gpu",
    )
    assert (out.version, out.smoke_test) == (1, "passed")
    assert os.path.isdir(os.path.join(base, "digits", "1"))
    with open(os.path.join(manifests.path, "tfserving-digits.yaml")) as fh:
        docs = list(yaml.safe_load_all(fh))
    dep = docs[1]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith("-gpu")
    assert 'key: "stable"' in docs[0]["data"]["models.config"]
    assert manifests.metadata["smoke_test"] == "passed"


def test_deploy_component_refuses_unblessed(assets, tmp_path):
    with pytest.raises(ModelError, match="infra_blessed=False"):
        deploy_tf_serving.python_func(
            model=assets["model"],
            dataset=assets["dataset"],
            manifests=dsl.Artifact(uri=str(tmp_path / "m")),
            model_base_path=str(tmp_path),
            blessed=True,
            infra_blessed=False,
        )
    assert not os.path.exists(os.path.join(tmp_path, "model"))
