"""``tfopt inspect``: the pre-flight report from the command line."""

from __future__ import annotations

import json

from tfopt import cli
from tfopt._keras import keras
from tfopt.training import models


def _save(tmp_path, shape=(8, 8, 1)) -> str:
    inputs = keras.Input(shape, name="x")
    h = keras.layers.Dense(16, activation="relu", name="hidden")(keras.layers.Flatten()(inputs))
    out = keras.layers.Dense(10, activation="softmax", name="probabilities")(h)
    return models.save_model(keras.Model(inputs, out), str(tmp_path / "m"))


def test_inspect_text_and_json(tmp_path, capsys, digits_dir):
    path = _save(tmp_path)
    assert cli.main(["inspect", path, "--dataset", digits_dir]) == 0
    text = capsys.readouterr().out
    assert "hidden" in text and "prunable:" in text and "int8 ops:" in text
    assert cli.main(["inspect", path, "--json", "--no-convert"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["hidden"]["prunable"] and rows["hidden"]["params"] == 64 * 16 + 16
    assert report["model"] == path and report["tflite"] is None


def test_inspect_flops_after_the_structured_pruning_target(tmp_path, capsys):
    path = _save(tmp_path)
    assert cli.main(["inspect", path, "--no-convert", "--flops-fraction", "0.3"]) == 0
    text = capsys.readouterr().out
    # hidden: 64 x 16, out: 16 x 10 multiply-adds; 16 -> 8 units (round_to 8) halves them
    assert "channel_prune at flops_fraction 0.3: FLOPs 1.18k -> 592 (-50.0%)" in text
    assert "channel groups pruned: hidden 16->8" in text
    assert cli.main(["inspect", path, "--json", "--no-convert", "--flops-fraction", "0.3"]) == 0
    report = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in report["layers"]}
    assert rows["hidden"]["flops"] == 1024 and rows["hidden"]["flops_after"] == 512
    assert rows["hidden"]["channels"] == 16 and rows["hidden"]["channels_kept"] == 8
    assert report["channel_prune"]["flops_after"] == 592
    assert report["channel_prune"]["params_after"] == 64 * 8 + 8 + 8 * 10 + 10
    assert cli.main(["inspect", path, "--no-convert", "--flops-fraction", "0.99"]) == 2
    assert "flops_fraction=0.99 is not allowed" in capsys.readouterr().err


def test_inspect_errors(tmp_path, capsys, digits_dir):
    assert cli.main(["inspect", str(tmp_path / "absent")]) == 2
    assert "not a SavedModel directory" in capsys.readouterr().err
    path = _save(tmp_path, shape=(28, 28, 1))
    assert cli.main(["inspect", path, "--dataset", digits_dir, "--no-convert"]) == 2
    assert "does not match the dataset's feature shape (8, 8, 1)" in capsys.readouterr().err
