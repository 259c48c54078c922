"""train and inspect components: the SavedModel hand-off, its metrics, and the pre-flight
report the inspect step writes of it (issue 15; off the train step since issue 29)."""

from __future__ import annotations

import pytest
from kfp import dsl

from tfopt.components.inspect_model import inspect_model
from tfopt.components.train import train
from tfopt.fsutil import read_json


def test_train_writes_the_model_and_its_inspect_report(tmp_path, digits_dir):
    model = dsl.Model(uri=str(tmp_path / "model"))
    report = dsl.Artifact(uri=str(tmp_path / "inspect"))
    train.python_func(
        dataset=dsl.Dataset(uri=digits_dir),
        model=model,
        metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        tensorboard=dsl.Artifact(uri=str(tmp_path / "tb")),
        train_config={"arch": "mlp", "width": 16, "depth": 1, "epochs": 1},
    )
    assert (tmp_path / "model" / "saved_model.pb").is_file()
    inspect_model.python_func(model=model, report=report)
    got = read_json(report.path)
    # 64 inputs -> 16 -> 10: two Dense layers (1040 + 170 params)
    dense = [r for r in got["layers"] if r["type"] == "Dense"]
    assert [r["params"] for r in dense] == [1040, 170]
    assert got["params"] == model.metadata["params"]
    assert got["input_shape"] == [8, 8, 1]
    assert [r["prunable"] for r in dense] == [True, False]  # the classifier stays dense
    assert [r["qat"] for r in dense] == [True, True]
    # pruning prunes kernels: the first layer's 64 x 16
    assert got["coverage"]["prunable_param_fraction"] == pytest.approx(1024 / got["params"])
    assert got["tflite"] is None  # by default: the tflite steps convert
