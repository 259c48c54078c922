"""Keras 3 models through the whole default pipeline under KFP's local runner (issue 30).

A user's Keras 3 functional CNN (a residual Add, BatchNormalization, SeparableConv2D) on
digits drawn as 32x32 RGB images in class folders: every default variant is produced,
what the pre-flight report said each technique would cover is what it covered, and the
selected SavedModel keeps tfopt's signatures and carries the Keras 3 file. A Keras 3
keras.applications MobileNetV2 goes through the same techniques in-process
(tests/unit/test_keras3_families.py).
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pytest

from tfopt import model_info, registry
from tfopt._keras import tf
from tfopt.client.local import run_local
from tfopt.compression import techniques  # noqa: F401 - registers every technique
from tfopt.training import keras3

K = keras3.k3()
NAMES = tuple(f"digit_{i}" for i in range(10))  # sorted as the label ids
EXAMPLES = 300
# tiny budgets: every default step runs once, quickly
SMALL = {
    "epochs": 1,
    "early_stopping_patience": 0,
    "latency_iterations": 10,
    "representative_samples": 20,
    "prune_epochs": 1,
    "distill_epochs": 1,
    "lowrank_epochs": 1,
    "qat_epochs": 1,
    "lowrank_energy": 0.5,  # these small, briefly trained kernels save nothing at 0.9
    "max_accuracy_drop": 100.0,
}
DEFAULT_VARIANTS = {registry.BASELINE, *(n for n in registry.names() if registry.on_by_default(n))}
SIGNATURES = {"serving_default", "classify", "serving_images", "serving_encoded"}


def _digits_32() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images[:EXAMPLES] * (255 / 16)).astype(np.uint8)
    x = np.kron(x, np.ones((4, 4), np.uint8))  # 8x8 -> 32x32
    return np.repeat(x[..., None], 3, axis=-1), d.target[:EXAMPLES]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[str, np.ndarray, np.ndarray]:
    from PIL import Image

    root = tmp_path_factory.mktemp("digits32")
    x, y = _digits_32()
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        folder = root / NAMES[label]
        folder.mkdir(exist_ok=True)
        Image.fromarray(img).save(folder / f"{i}.png")
    return str(root), x.astype(np.float32), y


def residual_cnn():
    inputs = K.Input((32, 32, 3), name="image")
    h = K.layers.Rescaling(1 / 255.0)(inputs)
    h = K.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(h)
    r = K.layers.SeparableConv2D(16, 3, padding="same")(h)
    r = K.layers.BatchNormalization(momentum=0.9)(r)
    h = K.layers.Add()([h, K.layers.Activation("relu")(r)])
    h = K.layers.MaxPooling2D(2)(h)
    h = K.layers.Conv2D(32, 1, activation="relu")(h)
    h = K.layers.Flatten()(h)
    h = K.layers.Dense(64, activation="relu")(h)
    return K.Model(inputs, K.layers.Dense(10, activation="softmax")(h), name="residual_cnn")


def _run(tmp_path, images, build, epochs: int) -> dict:
    root, x, y = images
    K.utils.set_random_seed(0)
    model = build()
    model.compile(K.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    src = str(tmp_path / "user_model.keras")
    model.save(src)
    params = {**SMALL, "source": root, "model_uri": src}
    return run_local(params, str(tmp_path / "run"))


def _steps(run_dir: str) -> dict[str, dict]:
    """Each step's output metadata and metrics (its executor output), by step folder."""
    out = {}
    for path in glob.glob(os.path.join(run_dir, "artifacts", "*", "*", "executor_output.json")):
        with open(path) as fh:
            artifacts = json.load(fh).get("artifacts", {})
        meta: dict = {}
        for name, entry in artifacts.items():
            for art in entry.get("artifacts", []):
                meta[name] = art.get("metadata", {})
        out[os.path.basename(os.path.dirname(path))] = meta
    return out


def _check(summary: dict, run_dir: str) -> None:
    from tfopt.compression import inspect

    by_name = {v["name"]: v for v in summary["variants"]}
    assert set(by_name) == DEFAULT_VARIANTS  # every variant produced, none skipped
    for v in summary["variants"]:
        assert not v.get("error") and os.path.exists(v["path"]), (v["name"], v.get("error"))
        if v["format"] == "saved_model":  # a Keras 3 file beside every SavedModel
            entry = model_info.read_model_info(v["path"])["keras"]
            assert entry["version"] == K.__version__ and entry["translated"], v["name"]
            assert entry["keras3_file"] == keras3.KERAS3_FILE, (v["name"], entry)
            assert os.path.exists(os.path.join(v["path"], keras3.KERAS3_FILE))
            assert v["origin"]["keras"]["keras3_file"] == keras3.KERAS3_FILE  # in the summary
    base = by_name["baseline"]
    assert base["origin"]["source_format"] == "keras3_file"
    assert base["origin"]["keras"]["max_abs_diff"] <= keras3.TOLERANCE
    assert set(tf.saved_model.load(base["path"]).signatures) >= SIGNATURES
    # pre-flight = what applied: the import step's report, and one with the run's energy
    steps = _steps(run_dir)
    (path,) = glob.glob(os.path.join(run_dir, "artifacts", "*", "import-model", "inspect"))
    with open(path) as fh:
        report = json.load(fh)
    assert report["keras"]["translated"] and report["keras"]["version"] == K.__version__
    cov = report["coverage"]
    assert steps["prune"]["compressed_model"]["pruned_param_fraction"] == pytest.approx(
        cov["prunable_param_fraction"]
    )
    qat_steps = [m for name, m in steps.items() if name.startswith("qat") and m.get("metrics")]
    assert qat_steps
    for meta in qat_steps:  # qat_int8 and pqat_int8 (its pruned model has the same layers)
        fraction = meta["compressed_model"].get("quantized_param_fraction")
        if fraction is not None:
            assert fraction == pytest.approx(cov["qat_param_fraction"])
    energy = inspect.inspect_model(base["path"], convert=False, energy=SMALL["lowrank_energy"])
    factorized = steps["lowrank"]["compressed_model"]["layers"]
    assert set(factorized) == set(energy["coverage"]["factorizable_layers"])
    if summary.get("selected"):  # the card of a selected model says which Keras
        with open(summary["model_card"]) as fh:
            assert f"Keras {K.__version__} model (file), translated to tf_keras" in fh.read()


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_keras3_residual_cnn_through_the_default_pipeline(tmp_path, images):
    summary = _run(tmp_path, images, residual_cnn, epochs=15)
    _check(summary, str(tmp_path / "run"))
    # deploy_target tf_serving (the default) selects a SavedModel: the user gets Keras 3 back
    selected = next(v for v in summary["variants"] if v["name"] == summary["selected"])
    assert selected["format"] == "saved_model"
    back = K.saving.load_model(os.path.join(selected["path"], keras3.KERAS3_FILE))
    x = images[1][:16]
    served = tf.saved_model.load(selected["path"]).signatures["serving_default"]
    np.testing.assert_allclose(
        np.asarray(back(x)), served(x=tf.constant(x))["probabilities"].numpy(), atol=1e-5
    )
    with open(summary["model_card"]) as fh:
        assert "Keras 3 file `model.keras` beside the SavedModel" in fh.read()
    run_dir = str(tmp_path / "run")  # the select step's copy carries it too
    assert glob.glob(
        os.path.join(run_dir, "artifacts", "*", "select", "selected_model", "model.keras")
    )
