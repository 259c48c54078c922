"""The optimize pipeline on a stratified subset of the real Fashion-MNIST (local runner).

Needs Debian's ``dataset-fashion-mnist`` (``make test`` installs it where it can; the
tests skip without it, saying so, except under ``CI=true``, where they fail).
"""

import os

import pytest

from tfopt.client.local import run_local
from tfopt.data import idx

from helpers import configs
from helpers.prerequisites import missing


@pytest.fixture(autouse=True)
def _fashion_mnist_installed():
    if not idx.is_idx_dir(os.environ.get(idx.FASHION_MNIST_ENV) or idx.FASHION_MNIST_DIR):
        missing("dataset-fashion-mnist", "sudo apt-get install dataset-fashion-mnist")


# The fast configuration: baseline + int8 only, a small CNN, a few epochs.
FAST = {
    **configs.FAST,
    "source": "builtin:fashion_mnist",
    "max_examples": 3500,  # 3,000 train+validation, 500 test, stratified by class
    "representative_samples": 100,
    "max_accuracy_drop": 3.0,
    "deploy_target": "none",
}


@pytest.mark.slow
def test_fashion_mnist_subset_trains_and_quantizes(tmp_path):
    summary = run_local(dict(FAST), str(tmp_path))
    ds = summary["dataset"]
    assert ds["name"] == "builtin:fashion_mnist" and ds["num_classes"] == 10
    assert ds["num_test"] == 500  # 10,000 of 70,000 in the subset: the real test split
    assert ds["num_train"] + ds.get("num_validation", 0) == 3000
    variants = {v["name"]: v for v in summary["variants"]}
    assert set(variants) == {"baseline", "tflite_int8"}
    base = variants["baseline"]["accuracy"]
    # a 10-class task: chance is 0.10; a small CNN on 2,700 images reaches ~0.75+
    assert base >= 0.65, base
    assert variants["tflite_int8"]["accuracy"] >= base - 0.03
    assert variants["tflite_int8"]["size_bytes"] < variants["baseline"]["size_bytes"]
