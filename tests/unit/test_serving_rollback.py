"""Rollback targets: a damaged or never-verified version is never kept as "previous stable"."""

import os

import pytest

from tfopt._keras import tf
from tfopt.data import input_pipeline, schema
from tfopt.deploy.serving import config as sc
from tfopt.deploy.serving import deploy, repository, rollback
from tfopt.training import models


@pytest.fixture(scope="module")
def assets(tmp_path_factory, digits_dir):
    root = tmp_path_factory.mktemp("serving_rollback")
    x, _ = input_pipeline.load_arrays(schema.load_info(digits_dir), "test", limit=16)
    good = []
    for i in range(3):
        m = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
        good.append(models.save_model(m, str(root / f"m{i}")))

    class Other(tf.Module):  # loads and serves, but has no `probabilities`: fails the smoke test
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x")])
        def serve(self, x):
            return {"scores": tf.reduce_sum(x, axis=[1, 2, 3])}

    other = Other()
    wrong = str(root / "wrong")
    tf.saved_model.save(other, wrong, signatures={"serving_default": other.serve})
    return {"x": x, "good": good, "wrong": wrong}


def _entry(base):
    return sc.read_model_config(os.path.join(base, "models.config"))[0]


def _truncate(base, version):
    pb = os.path.join(base, "digits", str(version), "saved_model.pb")
    with open(pb, "r+b") as fh:
        fh.truncate(os.path.getsize(pb) // 3)


def test_a_damaged_stable_is_never_the_rollback_target(assets, tmp_path):
    base = str(tmp_path / "repo")
    cfg = deploy.DeployConfig("digits")
    m0, m1, m2 = assets["good"]
    first = deploy.deploy(m0, base, assets["x"], cfg)
    assert (first.version, first.rollback_version) == (1, None)
    second = deploy.deploy(m1, base, assets["x"], cfg)
    assert (second.version, second.rollback_version) == (2, 1)
    assert rollback.verified_versions(base, "digits") == [1, 2]
    _truncate(base, 2)  # version 2 was served, then its files were damaged
    # the good version 1 stays loaded while the next candidate fails its smoke test
    with pytest.raises(deploy.DeployError, match=r"rolled back to version 1 \(skipped: version 2"):
        deploy.deploy(assets["wrong"], base, assets["x"], cfg)
    entry = _entry(base)
    assert entry.label_map == {"stable": 1} and entry.versions == (1,)
    assert 3 not in rollback.verified_versions(base, "digits")
    # a verified successor: version 1 is kept for rollback, not the damaged 2 or the failed 3
    fourth = deploy.deploy(m2, base, assets["x"], cfg)
    assert (fourth.version, fourth.smoke_test, fourth.rollback_version) == (4, "passed", 1)
    entry = _entry(base)
    assert entry.label_map == {"stable": 4} and entry.versions == (1, 4)


def test_a_version_that_failed_its_smoke_test_is_never_chosen(assets, tmp_path):
    base = str(tmp_path / "repo")
    deploy.deploy(assets["good"][0], base, assets["x"], deploy.DeployConfig("digits"))
    # pushed but failed: version 2 exists in the repository, never verified
    deploy.deploy(
        assets["wrong"], base, assets["x"], deploy.DeployConfig("digits"), raise_on_failure=False
    )
    assert repository.list_versions(base, "digits") == [1, 2]
    target, skipped = rollback.rollback_target(base, "digits", [2, 1], exclude=3)
    assert target == 1 and skipped == ["version 2 never passed a smoke test"]
    _truncate(base, 1)
    target, skipped = rollback.rollback_target(base, "digits", [2, 1], exclude=3)
    assert target is None and "version 1 is damaged" in skipped[1]
