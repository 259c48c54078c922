"""A user's model code (module_file): loading, errors, training, and the model travelling
with its code."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfopt import model_info
from tfopt.compression import distill
from tfopt.errors import ConfigError, ModelError
from tfopt.training import models, module_file, train

GOOD = textwrap.dedent(
    '''
    import tf_keras as keras


    class Scale(keras.layers.Layer):
        """A custom layer: multiplies by a learned scalar."""

        def build(self, shape):
            self.s = self.add_weight(name="s", shape=(), initializer="ones")

        def call(self, x):
            return x * self.s


    def build_model(hparams, input_shape, num_classes):
        inputs = keras.Input(input_shape, name="x")
        h = keras.layers.Flatten()(Scale()(inputs / 16.0))
        h = keras.layers.Dense(hparams.get("width", 16), activation="relu")(h)
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(h))


    def build_student(hparams, input_shape, num_classes):
        inputs = keras.Input(input_shape, name="x")
        h = keras.layers.Flatten()(Scale()(inputs / 16.0))
        out = keras.layers.Dense(num_classes, activation="softmax", name="student_out")(h)
        return keras.Model(inputs, out, name="module_student")


    custom_objects = {"Scale": Scale}
    '''
)


def _write(tmp_path, text: str, name: str = "m.py") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_good_module_trains_and_reloads_in_a_fresh_process(tmp_path, digits_dir):
    src = _write(tmp_path, GOOD)
    out = str(tmp_path / "model")
    config = train.TrainConfig(
        module_file=src, epochs=2, early_stopping_patience=0, learning_rate=0.01
    )
    result = train.train_model(digits_dir, out, config)
    assert result.metrics["val_accuracy"] > 0.6
    with open(src, "rb") as fh:
        sha = hashlib.sha256(fh.read()).hexdigest()
    assert model_info.read_model_info(out)["module_sha256"] == sha
    with open(os.path.join(out, module_file.MODULE_FILE_NAME)) as fh:
        assert fh.read() == GOOD
    os.remove(src)  # the model carries its code: the original file is not needed
    code = (
        "import numpy as np\n"
        "from tfopt.training import models\n"
        f"m = models.load_model({out!r})\n"
        "print([type(la).__name__ for la in m.layers], m.predict(np.zeros((2, 8, 8, 1))).shape)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    last = run.stdout.strip().splitlines()[-1]
    assert "'Scale'" in last and last.endswith("(2, 10)")


def test_distill_uses_the_modules_student(tmp_path, digits_dir):
    teacher = str(tmp_path / "teacher")
    config = train.TrainConfig(
        module_file=_write(tmp_path, GOOD), epochs=1, early_stopping_patience=0
    )
    train.train_model(digits_dir, teacher, config)
    out = str(tmp_path / "student")
    result = distill.distill_model(
        teacher, digits_dir, out, distill.DistillConfig(epochs=1, train_scratch=False)
    )
    student = models.load_model(out)
    assert student.name == "module_student" and student.layers[-1].name == "student_out"
    assert result.student_params == models.count_params(student)
    assert os.path.exists(os.path.join(out, module_file.MODULE_FILE_NAME))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("import tf_keras\n\nx = 1\n", "no build_model function"),
        ("def build_model(hparams, input_shape, num_classes):\n    return (\n\n", "line 2"),
        ("custom_objects = []\ndef build_model(h, s, n):\n    pass\n", "custom_objects is list"),
        ("raise RuntimeError('boom')\n", r"RuntimeError: boom \(line 1\)"),
    ],
)
def test_bad_module_files(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        module_file.load_module(_write(tmp_path, text))


def test_missing_file_and_not_a_model(tmp_path, digits_dir):
    with pytest.raises(ConfigError, match="no such file"):
        module_file.load_module(str(tmp_path / "absent.py"))
    src = _write(tmp_path, "def build_model(hparams, input_shape, num_classes):\n    return 3\n")
    out = tmp_path / "model"
    config = train.TrainConfig(module_file=src, epochs=1)
    with pytest.raises(ModelError, match="returned builtins.int, not a Keras model.*Keras 3"):
        train.train_model(digits_dir, str(out), config)
    assert not out.exists()


def test_hparams_reach_build_model(tmp_path):
    user = module_file.load_module(_write(tmp_path, GOOD))
    model = user.build_model({"width": 7}, (8, 8, 1), 10)
    assert model.layers[-2].units == 7
    assert module_file.module_of(model) is user
    scale = next(la for la in model.layers if type(la).__name__ == "Scale")
    assert type(scale).__module__ == user.module.__name__ and np.isclose(scale.get_weights()[0], 1)
