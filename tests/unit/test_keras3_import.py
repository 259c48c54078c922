"""Keras 3 models in and out (issue 30): model_uri, module files, bad input, every message's
advice run."""

from __future__ import annotations

import json
import os
import textwrap

import numpy as np
import pytest

from tfopt import cli, model_info
from tfopt._keras import tf
from tfopt.compression import cluster, distill, inspect, lowrank, prune, qat, tflite
from tfopt.data import input_pipeline, schema
from tfopt.errors import ModelError
from tfopt.training import imported, keras3, models, train

K = keras3.k3()
pytestmark = pytest.mark.usefixtures("forget_keras3_origin")

# A user's module file: a Keras 3 custom layer, and the tf_keras class that translates it
MODULE = textwrap.dedent(
    '''
    import keras
    import tf_keras


    @keras.saving.register_keras_serializable(package="user")
    class Scale(keras.layers.Layer):
        """Multiplies by a learned scalar."""

        def build(self, shape):
            self.s = self.add_weight(name="s", shape=(), initializer="ones")

        def call(self, x):
            return x * self.s


    class TfkScale(tf_keras.layers.Layer):
        def build(self, shape):
            self.s = self.add_weight(name="s", shape=(), initializer="ones")

        def call(self, x):
            return x * self.s


    def build_model(hparams, input_shape, num_classes):
        inputs = keras.Input(input_shape, name="x")
        h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(Scale()(inputs / 16))
        h = keras.layers.BatchNormalization(momentum=0.9)(h)
        h = keras.layers.Dense(num_classes, activation="softmax")(keras.layers.Flatten()(h))
        return keras.Model(inputs, h)


    def build_student(hparams, input_shape, num_classes):
        return keras.Sequential(
            [keras.Input(input_shape), keras.layers.Rescaling(1 / 16), keras.layers.Flatten(),
             keras.layers.Dense(num_classes, activation="softmax")],
            name="keras3_student",
        )


    custom_objects = {"Scale": Scale}
    '''
)
WITH_TF_KERAS = MODULE + 'tf_keras_objects = {"Scale": TfkScale}\n'


@pytest.fixture(scope="module")
def data(digits_dir):
    info = schema.load_info(digits_dir)
    x, y = input_pipeline.load_arrays(info, "train")
    xt, yt = input_pipeline.load_arrays(info, "test")
    return info, x, y, xt, yt


def residual_cnn(shape=(8, 8, 1), scale=None):
    """The issue's user CNN: a residual Add, BatchNormalization and SeparableConv2D."""
    inputs = K.Input(shape, name="pixels")
    h = K.layers.Rescaling(1 / 16)(inputs)
    if scale is not None:
        h = scale(h)
    h = K.layers.Conv2D(8, 3, padding="same", activation="relu")(h)
    r = K.layers.SeparableConv2D(8, 3, padding="same")(h)
    r = K.layers.BatchNormalization(momentum=0.9)(r)
    h = K.layers.Add()([h, K.layers.Activation("relu6")(r)])
    h = K.layers.Flatten()(K.layers.MaxPooling2D(2)(h))
    h = K.layers.Dense(32, activation="swish")(h)
    return K.Model(inputs, K.layers.Dense(10)(h), name="k3_residual_cnn")  # logits


def _fit(model, x, y, epochs=4):
    model.compile("adam", K.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=epochs, verbose=0, batch_size=32)
    return model


@pytest.fixture(scope="module")
def k3_file(tmp_path_factory, data):
    _, x, y, _, _ = data
    K.utils.set_random_seed(0)
    path = str(tmp_path_factory.mktemp("k3") / "k3.keras")
    _fit(residual_cnn(), x, y).save(path)
    return path


def _softmax(z):
    return tf.nn.softmax(z).numpy()


def test_keras3_file_in_every_technique_and_keras3_out(tmp_path, digits_dir, data, k3_file):
    _, _, _, xt, _ = data
    original = K.saving.load_model(k3_file)
    out = str(tmp_path / "baseline")
    result = imported.import_model(k3_file, digits_dir, out)
    assert (result.source_format, result.output, result.trainable) == (
        "keras3_file",
        "logits",
        True,
    )
    entry = result.keras
    assert entry["version"] == K.__version__ and entry["translated"] is True
    assert entry["max_abs_diff"] <= keras3.TOLERANCE and entry["checked_examples"] == 256
    baseline = models.load_model(out)
    expected = _softmax(np.asarray(original(xt)))
    np.testing.assert_allclose(baseline.predict(xt, verbose=0), expected, atol=1e-5)
    # the SavedModel keeps tfopt's signatures; the Keras 3 file beside it is the same model
    assert "serving_default" in tf.saved_model.load(out).signatures
    assert entry["keras3_file"] == keras3.KERAS3_FILE
    back = K.saving.load_model(os.path.join(out, keras3.KERAS3_FILE))
    np.testing.assert_allclose(np.asarray(back(xt)), expected, atol=1e-5)
    report = inspect.inspect_model(out, convert=False)
    assert report["keras"]["version"] == K.__version__ and report["keras"]["translated"]
    assert f"Keras {K.__version__} (file), translated" in inspect.format_inspect(report)
    # what the pre-flight said would apply is what applied
    pruned = prune.prune_model(
        out, digits_dir, str(tmp_path / "pruned"), prune.PruneConfig(epochs=1)
    )
    assert sorted(pruned.pruned_layers) == sorted(
        report["coverage"]["techniques"]["prune"]["layers"]
    )
    pruned_info = model_info.read_model_info(str(tmp_path / "pruned"))["keras"]
    assert pruned_info["keras3_file"] == keras3.KERAS3_FILE and pruned_info["from"] == "file"
    pruned_k3 = K.saving.load_model(str(tmp_path / "pruned" / keras3.KERAS3_FILE))
    zeros = [np.mean(w == 0) for la in pruned_k3.layers for w in la.get_weights() if w.ndim > 1]
    assert max(zeros) > 0.5  # the zeros came back too
    low = lowrank.factorize_model(
        out, digits_dir, str(tmp_path / "lowrank"), lowrank.LowRankConfig(epochs=1)
    )
    assert set(low.layers) == set(report["coverage"]["factorizable_layers"])
    assert os.path.exists(tmp_path / "lowrank" / keras3.KERAS3_FILE)
    clustered = str(tmp_path / "clustered")
    cluster.cluster_model(out, digits_dir, clustered, cluster.ClusterConfig(epochs=1))
    back = K.saving.load_model(os.path.join(clustered, keras3.KERAS3_FILE))
    kernels = [w for w in back.get_weights() if w.ndim >= 2 and w.size > 100]
    count = cluster.ClusterConfig().cluster_count
    assert any(len(np.unique(k)) <= count for k in kernels)  # the shared values came back
    q = qat.qat_model(
        str(tmp_path / "pruned"),
        digits_dir,
        str(tmp_path / "pqat.tflite"),
        qat.QatConfig(epochs=1, preserve_sparsity=True, representative_samples=20),
    )
    assert q.quantized_param_fraction == pytest.approx(report["coverage"]["qat_param_fraction"])


def test_keras3_h5_file(tmp_path, digits_dir, data, k3_file):
    path = str(tmp_path / "k3.h5")
    K.saving.load_model(k3_file).save(path)
    assert keras3.file_version(path) == K.__version__
    result = imported.import_model(path, digits_dir, str(tmp_path / "m"))
    assert result.source_format == "keras3_file" and result.keras["translated"]


def test_inspect_cli_reads_a_keras3_file(capsys, k3_file):
    assert cli.main(["inspect", k3_file, "--no-convert"]) == 0
    text = capsys.readouterr().out
    assert f"Keras: Keras {K.__version__} (file), translated to tf_keras" in text
    assert "separable_conv2d" in text


def _save_with_scale(tmp_path, module_text, x, y) -> tuple[str, str]:
    """A Keras 3 model using the module's custom layer, saved; (model path, module path)."""
    module = tmp_path / "my_model.py"
    module.write_text(module_text)
    from tfopt.training import module_file

    scale_cls = module_file.load_module(str(module)).custom_objects["Scale"]
    K.utils.set_random_seed(0)
    path = str(tmp_path / "custom.keras")
    _fit(residual_cnn(scale=scale_cls(name="my_scale")), x, y, epochs=2).save(path)
    return path, str(module)


def test_custom_layer_from_module_file_translates(tmp_path, digits_dir, data):
    _, x, y, _, _ = data
    path, module = _save_with_scale(tmp_path, WITH_TF_KERAS, x, y)
    config = imported.ImportConfig(module_file=module)
    out = str(tmp_path / "m")
    result = imported.import_model(path, digits_dir, out, config)
    assert result.trainable and result.keras["translated"]
    assert "TfkScale" in {type(la).__name__ for la in models.load_model(out)._flatten_layers()}
    pruned = str(tmp_path / "pruned")
    prune.prune_model(out, digits_dir, pruned, prune.PruneConfig(epochs=1))
    back = K.saving.load_model(os.path.join(pruned, keras3.KERAS3_FILE))  # Scale again
    assert "Scale" in {type(la).__name__ for la in back._flatten_layers()}


def test_layer_with_no_equivalent_post_training_still_runs(tmp_path, digits_dir, data, capsys):
    _, x, y, _, _ = data
    path, module = _save_with_scale(tmp_path, MODULE, x, y)  # no tf_keras_objects
    out = str(tmp_path / "m")
    config = imported.ImportConfig(module_file=module)
    result = imported.import_model(path, digits_dir, out, config)
    assert not result.trainable and not result.keras["translated"]
    assert result.keras["untranslatable"]["layer"] == "my_scale"
    with pytest.raises(ModelError, match=r"layer 'my_scale' \(Scale\) has no tf_keras"):
        prune.prune_model(out, digits_dir, str(tmp_path / "pruned"))
    q = tflite.convert_to_tflite(
        out,
        digits_dir,
        str(tmp_path / "m.tflite"),
        tflite.TFLiteConfig(mode="int8", representative_samples=20, max_accuracy_drop=-1.0),
    )
    assert q.size_bytes > 0
    report = inspect.inspect_model(out, convert=False)
    assert report["keras"]["untranslatable"]["layer"] == "my_scale"
    assert {"prune", "qat", "lowrank", "cluster"} <= set(report["keras"]["blocks"])
    assert "blocked by that layer: " in inspect.format_inspect(report)
    # tfopt inspect on the file itself names the layer and what it blocks
    from tfopt.training import module_file

    module_file.load_module(module)  # registers Scale with Keras 3, as a user's import does
    assert cli.main(["inspect", path, "--no-convert"]) == 0
    text = capsys.readouterr().out
    assert "my_scale" in text and "no tf_keras equivalent" in text and "blocked by" in text


def test_unknown_custom_layer_and_its_advice(tmp_path, digits_dir, data):
    _, x, y, _, _ = data
    undecorated = WITH_TF_KERAS.replace(
        '@keras.saving.register_keras_serializable(package="user")\n', ""
    )
    path, module = _save_with_scale(tmp_path, undecorated, x, y)
    out = tmp_path / "out"
    with pytest.raises(ModelError, match=r"uses the custom layer 'Scale'.*custom_objects") as e:
        imported.import_model(path, digits_dir, str(out))
    assert "module_file" in str(e.value) and "tf_keras_objects" in str(e.value)
    assert not out.exists()
    # the advice: a module file whose custom_objects has the class
    config = imported.ImportConfig(module_file=module)
    assert imported.import_model(path, digits_dir, str(out), config).keras["translated"]


def test_subclassed_model_and_its_advice(tmp_path, digits_dir, data):
    _, x, y, xt, _ = data

    @K.saving.register_keras_serializable(package="test_keras3_import")
    class Net(K.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.flat = K.layers.Flatten()
            self.dense = K.layers.Dense(10)

        def call(self, inputs):
            return self.dense(self.flat(inputs / 16.0))

    net = Net()
    net.compile("adam", K.losses.SparseCategoricalCrossentropy(from_logits=True))
    net.fit(x, y, epochs=2, verbose=0)
    path = str(tmp_path / "net.keras")
    net.save(path)
    out = tmp_path / "out"
    with pytest.raises(ModelError, match=r"subclassed Keras 3 model") as e:
        imported.import_model(path, digits_dir, str(out))
    text = str(e.value)
    assert "post-training variants" in text and "distillation" in text
    assert not out.exists()
    # the advice: Keras 3's model.export, passed as model_uri
    exported = str(tmp_path / "exported_dir")
    net.export(exported, verbose=False)
    result = imported.import_model(exported, digits_dir, str(out))
    assert result.source_format == "saved_model" and not result.trainable
    np.testing.assert_allclose(
        models.load_model(str(out)).predict(xt, verbose=0), _softmax(np.asarray(net(xt))), atol=1e-5
    )
    d = distill.distill_model(  # distillation with it as the teacher
        str(out), digits_dir, str(tmp_path / "student"), distill.DistillConfig(epochs=1)
    )
    assert d.student_params > 0


def test_input_that_does_not_fit(tmp_path, digits_dir):
    path = str(tmp_path / "big.keras")
    residual_cnn(shape=(28, 28, 1)).save(path)
    out = tmp_path / "out"
    with pytest.raises(ModelError, match=r"shape \(28, 28, 1\).*\(8, 8, 1\)"):
        imported.import_model(path, digits_dir, str(out))
    assert not out.exists()


def test_module_file_returning_keras3_models(tmp_path, digits_dir):
    module = tmp_path / "k3_module.py"
    module.write_text(WITH_TF_KERAS)
    out = str(tmp_path / "model")
    config = train.TrainConfig(
        module_file=str(module), epochs=2, early_stopping_patience=0, learning_rate=0.01
    )
    result = train.train_model(digits_dir, out, config)
    assert result.metrics["val_accuracy"] > 0.5
    entry = model_info.read_model_info(out)["keras"]
    assert entry["from"] == "module_file" and entry["keras3_file"] == keras3.KERAS3_FILE
    back = K.saving.load_model(os.path.join(out, keras3.KERAS3_FILE))
    x = np.random.default_rng(0).uniform(0, 16, (8, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(back(x)), models.load_model(out).predict(x, verbose=0), atol=1e-5
    )
    student = str(tmp_path / "student")  # the module's Keras 3 build_student
    distill.distill_model(out, digits_dir, student, distill.DistillConfig(epochs=1))
    assert models.load_model(student).name == "keras3_student"
    assert model_info.read_model_info(student)["keras"]["keras3_file"] == keras3.KERAS3_FILE


def test_bad_module_file_keras3_model_names_the_layer(tmp_path, digits_dir):
    module = tmp_path / "no_tfk.py"
    module.write_text(MODULE)  # a custom Keras 3 layer, no tf_keras class for it
    config = train.TrainConfig(module_file=str(module), epochs=1, early_stopping_patience=0)
    with pytest.raises(ModelError, match=r"layer 'scale(_\d+)?' \(Scale\).*tf_keras_objects"):
        train.train_model(digits_dir, str(tmp_path / "m"), config)
    assert not (tmp_path / "m").exists()


def test_keras_origin_reaches_the_model_card():
    from tfopt.reporting import modelcard

    entry = {"version": "3.15.1", "from": "file", "translated": True, "max_abs_diff": 2e-7}
    lines = modelcard._origin_lines(
        {"source_uri": "k3.keras", "keras": {**entry, "keras3_file": "model.keras"}}, "saved_model"
    )
    assert any(
        "Keras 3.15.1 model (file), translated" in ln and "model.keras" in ln for ln in lines
    )
    lines = modelcard._origin_lines({"source_uri": "m.h5", "source_format": "keras_file"})
    assert "- Keras: Keras 2 (tf_keras)" in lines
    assert json.dumps(entry)  # JSON-able, as tfopt_model.json stores it
