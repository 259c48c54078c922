"""Bring your own model: import checks, wrapping, and what a plain SavedModel gets."""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np
import pytest

from tfopt import model_info
from tfopt._keras import keras, tf
from tfopt.compression import distill, inspect, prune, tflite
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError, ModelError
from tfopt.training import imported, models


@pytest.fixture(scope="module")
def data(digits_dir):
    info = schema.load_info(digits_dir)
    x, y = input_pipeline.load_arrays(info, "test")
    return info, x, y


def _trained(info, logits: bool = False, scale: float = 1.0) -> keras.Model:
    """A small dense classifier fitted 3 epochs on digits (inputs multiplied by ``scale``)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(info.feature_shape, name="pixels"),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation="relu"),
            keras.layers.Dense(info.num_classes, activation=None if logits else "softmax"),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=logits))
    x, y = input_pipeline.load_arrays(info, "train")
    model.fit(x * scale, y, epochs=3, verbose=0)
    return model


def _accuracy(model, x, y) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def test_keras_saved_model_is_the_baseline_as_is(tmp_path, digits_dir, data):
    info, x, y = data
    original = _trained(info)
    src = str(tmp_path / "src")
    original.save(src, save_format="tf")
    out = str(tmp_path / "model")
    result = imported.import_model(src, digits_dir, out)
    assert (result.source_format, result.output, result.trainable) == (
        "keras_saved_model",
        "probabilities",
        True,
    )
    loaded = models.load_model(out)
    assert _accuracy(loaded, x, y) == _accuracy(original, x, y) > 0.5
    np.testing.assert_allclose(loaded.predict(x, verbose=0), original.predict(x, verbose=0), 1e-5)
    info_json = model_info.read_model_info(out)
    assert info_json["source_uri"] == src and info_json["trainable"] is True
    sig = tf.saved_model.load(out).signatures["serving_default"]
    assert list(sig.structured_outputs) == [models.OUTPUT_NAME]


def test_h5_logits_get_a_softmax(tmp_path, digits_dir, data):
    info, x, _ = data
    original = _trained(info, logits=True)
    src = str(tmp_path / "logits.h5")
    original.save(src)
    out = str(tmp_path / "model")
    result = imported.import_model(src, digits_dir, out)
    assert (result.source_format, result.output) == ("keras_file", "logits")
    p = models.load_model(out).predict(x, verbose=0)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(p, tf.nn.softmax(original.predict(x, verbose=0)).numpy(), 1e-5)


def test_keras_file_with_declared_range_gets_an_adapter(tmp_path, digits_dir, data):
    info, x, _ = data
    original = _trained(info, scale=1 / 16)  # trained on [0, 1]; digits are 0..16
    src = str(tmp_path / "unit.keras")
    original.save(src)
    out = str(tmp_path / "model")
    result = imported.import_model(src, digits_dir, out, imported.ImportConfig(input_range="unit"))
    assert result.data_range == (0.0, 16.0) and result.model_range == (0.0, 1.0)
    got = models.load_model(out).predict(x, verbose=0)
    np.testing.assert_allclose(got, original.predict(x / 16, verbose=0), rtol=1e-4, atol=1e-6)


class _Plain(tf.Module):
    """A non-Keras classifier: a linear map over the flattened digits, returning logits."""

    def __init__(self, w, b):
        super().__init__()
        self.w, self.b = tf.Variable(w), tf.Variable(b)

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="images")])
    def __call__(self, images):
        return {"scores": tf.matmul(tf.reshape(images, [-1, 64]), self.w) + self.b}


def test_plain_saved_model_post_training_only(tmp_path, digits_dir, data):
    _, x, _ = data
    rng = np.random.default_rng(0)
    plain = _Plain(rng.normal(size=(64, 10)).astype(np.float32) * 0.1, np.zeros(10, np.float32))
    src = str(tmp_path / "plain")
    tf.saved_model.save(plain, src, signatures={"serving_default": plain.__call__})
    out = str(tmp_path / "model")
    result = imported.import_model(src, digits_dir, out)
    assert (result.source_format, result.output, result.trainable) == (
        "saved_model",
        "logits",
        False,
    )
    assert result.params == 64 * 10 + 10  # the SavedModel's variables, frozen
    expected = tf.nn.softmax(plain(tf.constant(x))["scores"]).numpy()
    np.testing.assert_allclose(models.load_model(out).predict(x, verbose=0), expected, 1e-5)
    with pytest.raises(ModelError, match="imported plain SavedModel has no Keras layers"):
        prune.prune_model(out, digits_dir, str(tmp_path / "pruned"))
    assert not os.path.exists(tmp_path / "pruned")
    q = tflite.convert_to_tflite(
        out,
        digits_dir,
        str(tmp_path / "m.tflite"),
        tflite.TFLiteConfig(
            mode="int8", representative_samples=20, fallback="none", max_accuracy_drop=-1.0
        ),
    )
    assert q.mode == "int8" and q.size_bytes > 0
    d = distill.distill_model(  # a teacher for distillation
        out,
        digits_dir,
        str(tmp_path / "student"),
        distill.DistillConfig(
            student=models.ModelConfig(arch="mlp", width=8, depth=1), epochs=1, train_scratch=False
        ),
    )
    assert d.student_params < d.teacher_params
    report = inspect.inspect_model(out, convert=False)  # the import step's pre-flight artifact
    assert not any(r["prunable"] for r in report["layers"])


def _bad(tmp_path, digits_dir, src, match, **config):
    out = tmp_path / "out"
    with pytest.raises(ModelError, match=match):
        imported.import_model(str(src), digits_dir, str(out), imported.ImportConfig(**config))
    assert not out.exists()


def test_bad_inputs_fail_before_anything_is_written(tmp_path, digits_dir, data):
    info, _, _ = data
    wrong = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    wrong.save(tmp_path / "wrong.h5")
    _bad(tmp_path, digits_dir, tmp_path / "wrong.h5", r"shape \(28, 28, 1\).*\(8, 8, 1\)")
    reg = keras.Sequential(
        [keras.Input(info.feature_shape), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    reg.save(tmp_path / "reg.h5")
    _bad(tmp_path, digits_dir, tmp_path / "reg.h5", "single output unit")
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "readme.txt").write_text("hi")
    _bad(tmp_path, digits_dir, tmp_path / "notamodel", r"not a model.*found: readme\.txt")
    k3 = tmp_path / "k3.keras"
    with zipfile.ZipFile(k3, "w") as zf:
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.6.0"}))
        zf.writestr("config.json", json.dumps({"class_name": "Sequential"}))
    # a Keras 3 file is read by Keras 3 (tests/unit/test_keras3_import.py); a broken one says so
    _bad(tmp_path, digits_dir, k3, r"saved by Keras 3\.6\.0, Keras 3 cannot load it")
    logits = _trained(info, logits=True)
    logits.save(tmp_path / "logits.h5")
    _bad(
        tmp_path,
        digits_dir,
        tmp_path / "logits.h5",
        "not non-negative rows",
        output="probabilities",
    )


class Doubler(keras.layers.Layer):
    def call(self, x):
        return 2.0 * x


def test_h5_with_unknown_custom_layer(tmp_path, digits_dir, data):
    info, _, _ = data
    inputs = keras.Input(info.feature_shape)
    h = keras.layers.Flatten()(Doubler()(inputs))
    keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h)).save(tmp_path / "c.h5")
    _bad(tmp_path, digits_dir, tmp_path / "c.h5", r"Unknown layer.*module_file")


def test_remote_uri_is_copied_then_loaded(tmp_path, digits_dir, data):
    """A URI with a scheme (gs:// in production; TensorFlow's in-memory ram:// here)."""
    info, x, _ = data
    original = _trained(info)
    local = tmp_path / "src"
    original.save(str(local), save_format="tf")
    remote = "ram://tfopt-test/src"
    for path in local.rglob("*"):
        target = f"{remote}/{path.relative_to(local)}"
        if path.is_dir():
            tf.io.gfile.makedirs(target)
        else:
            tf.io.gfile.copy(str(path), target, overwrite=True)
    out = str(tmp_path / "model")
    assert imported.import_model(remote, digits_dir, out).source_format == "keras_saved_model"
    np.testing.assert_allclose(
        models.load_model(out).predict(x, verbose=0), original.predict(x, verbose=0), 1e-5
    )


def test_fine_tuning(tmp_path, digits_dir, data):
    info, x, y = data
    original = _trained(info, logits=True)
    src = str(tmp_path / "m.h5")
    original.save(src)
    config = imported.ImportConfig(
        fine_tune_epochs=2,
        train=imported.train_lib.TrainConfig(early_stopping_patience=0, learning_rate=0.01),
    )
    result = imported.import_model(src, digits_dir, str(tmp_path / "model"), config)
    assert set(result.metrics) >= {"loss", "accuracy", "val_loss"}
    assert _accuracy(models.load_model(result.model_path), x, y) > _accuracy(original, x, y)
    plain = _Plain(np.zeros((64, 10), np.float32), np.zeros(10, np.float32))
    tf.saved_model.save(
        plain, str(tmp_path / "plain"), signatures={"serving_default": plain.__call__}
    )
    with pytest.raises(ConfigError, match="fine_tune_epochs=2 is not allowed.*no Keras layers"):
        imported.import_model(str(tmp_path / "plain"), digits_dir, str(tmp_path / "p"), config)
    assert not (tmp_path / "p").exists()
