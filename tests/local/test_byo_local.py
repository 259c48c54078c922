"""Bring your own model under KFP's local runner: an imported model_uri and a module_file."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tfopt._keras import keras
from tfopt.client.local import run_local
from tfopt.data import ingest, input_pipeline, schema

from helpers import configs

# the dataset of the runs below, and only the steps the assertions need
FAST = {
    **configs.INT8_ONLY,
    "source": "builtin:digits",
    "max_examples": 400,
    "representative_samples": 50,
    "latency_iterations": 20,
    "max_accuracy_drop": 50.0,
    "deploy_target": "none",
}

MODULE = """
import tf_keras as keras


def build_model(hparams, input_shape, num_classes):
    inputs = keras.Input(input_shape, name="x")
    h = keras.layers.Flatten()(keras.layers.Rescaling(1 / 16)(inputs))
    h = keras.layers.Dense(hparams["width"], activation="relu")(h)
    return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(h))
"""


def _split(tmp_path, split: str):
    """The run's split: ingest is deterministic for the same source, subset and seed."""
    path = str(tmp_path / "data")
    ingest.ingest(path, ingest.IngestConfig(source="builtin:digits", max_examples=400))
    return input_pipeline.load_arrays(schema.load_info(path), split)


@pytest.mark.slow
def test_model_uri_is_the_baseline_as_is(tmp_path):
    x, y = _split(tmp_path, "train")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(10),  # logits: the import adds the softmax
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=5, verbose=0)
    src = str(tmp_path / "mine.h5")
    model.save(src)
    xt, yt = _split(tmp_path, "test")
    own = float(np.mean(np.argmax(model.predict(xt, verbose=0), -1) == yt))
    summary = run_local({**FAST, "model_uri": src}, str(tmp_path / "run"))
    by_name = {v["name"]: v for v in summary["variants"]}
    assert by_name["baseline"]["accuracy"] == pytest.approx(own, abs=1e-9)
    assert by_name["baseline"]["origin"]["source_uri"] == src
    assert by_name["baseline"]["origin"]["output"] == "logits"
    assert by_name["tflite_int8"]["accuracy"] >= own - 0.05


@pytest.mark.slow
def test_module_file_trains_and_the_card_has_its_hash(tmp_path):
    path = tmp_path / "my_model.py"
    path.write_text(MODULE)
    sha = hashlib.sha256(MODULE.encode()).hexdigest()
    params = {**FAST, "module_file": str(path), "width": 24, "epochs": 5, "learning_rate": 0.01}
    summary = run_local(params, str(tmp_path / "run"))
    baseline = next(v for v in summary["variants"] if v["name"] == "baseline")
    assert baseline["origin"]["module_sha256"] == sha
    assert baseline["accuracy"] > 0.5
    assert (tmp_path / "run" / "artifacts" / "modules" / f"{sha}.py").read_text() == MODULE
    with open(summary["model_card"]) as fh:
        assert f"module file, sha256 `{sha}`" in fh.read()
