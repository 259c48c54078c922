"""Distillation: the loss, the transfer set with labels masked, the student saved alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tfopt._keras import keras, tf
from tfopt.compression import distill
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError, DataError
from tfopt.training import models

from helpers.compression import assert_no_wrappers, assert_unchanged, snapshot

STUDENT = models.ModelConfig(arch="mlp", width=8, depth=1, dropout=0.0)


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits_dir, cnn):
    """10% labels, an unlabeled .npz as extra transfer data, augmentation on."""
    before = snapshot(cnn)
    tmp = tmp_path_factory.mktemp("distill")
    x, _ = input_pipeline.load_arrays(schema.load_info(digits_dir), "validation")
    np.savez(tmp / "unlabeled.npz", x=x)
    result = distill.distill_model(
        cnn,
        digits_dir,
        str(tmp / "student"),
        distill.DistillConfig(
            student_arch="mlp",
            student_width=8,
            student_depth=1,
            train_scratch=True,
            labelled_fraction=0.1,
            unlabeled=str(tmp / "unlabeled.npz"),
            augment=True,
            epochs=12,
            seed=3,
        ),
    )
    return result, before, len(x)


def test_student_is_saved_alone_and_is_smaller(run):
    result, _, _ = run
    model = models.load_model(result.model_path)
    assert models.count_params(model) == result.student_params == 64 * 8 + 8 + 8 * 10 + 10
    assert result.compression == pytest.approx(result.teacher_params / result.student_params)
    assert [type(la).__name__ for la in model.layers] == [
        "InputLayer",
        "Normalization",
        "Flatten",
        "Dense",
        "Dense",
        "Activation",
    ]
    assert_no_wrappers(result.model_path)


def test_transfer_set_has_the_labelled_share_and_the_unlabeled_inputs(run, digits_dir):
    result, _, unlabeled = run
    info = schema.load_info(digits_dir)
    assert result.transfer_examples == info.counts["train"] + unlabeled
    assert result.labelled_examples == pytest.approx(0.1 * info.counts["train"], abs=10)
    assert result.scratch_accuracy is not None and 0.0 < result.scratch_accuracy <= 1.0
    assert result.distilled_accuracy > 0.7  # learnt from the teacher


def test_input_model_is_unchanged_by_distillation(run, cnn):
    _, before, _ = run
    assert_unchanged(cnn, before)


def test_loss_is_alpha_ce_plus_t2_kl_with_masked_hard_labels():
    student = keras.Sequential([keras.layers.Dense(3), keras.layers.Activation("softmax")])
    student.build((None, 2))
    distiller = distill.Distiller(student, student, temperature=2.0, alpha=0.3)
    t = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], np.float32)
    s = np.array([[0.5, 1.0, 0.0], [1.0, 0.0, 1.0]], np.float32)
    labels = np.array([1, 0])
    mask = np.array([1.0, 0.0], np.float32)
    got = float(
        distiller.distill_loss(
            tf.constant(t), tf.constant(s), tf.constant(labels), tf.constant(mask)
        )
    )

    def softmax(z):
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    pt, ps = softmax(t / 2.0), softmax(s / 2.0)
    kl = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), -1))
    ce = -np.log(softmax(s)[0, 1])  # only the labelled example
    assert got == pytest.approx(0.3 * ce + 0.7 * 4.0 * kl, rel=1e-5)


def test_logits_come_from_the_softmax_input_or_log_probabilities():
    inputs = keras.Input((2,))
    z = keras.layers.Dense(3)(inputs)
    with_act = keras.Model(inputs, keras.layers.Activation("softmax")(z))
    fused = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    x = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)
    np.testing.assert_allclose(
        distill.logits_model(with_act)(x), keras.Model(inputs, z)(x), rtol=1e-6
    )
    logp = distill.logits_model(fused)(x).numpy()
    np.testing.assert_allclose(
        tf.nn.softmax(logp / 3.0), tf.nn.softmax(np.log(fused(x).numpy()) / 3.0), rtol=1e-5
    )


def test_labelled_mask_is_seeded_and_stratified():
    y = np.repeat(np.arange(5), 40)
    a = distill.labelled_mask(y, 0.1, seed=1, num_classes=5)
    b = distill.labelled_mask(y, 0.1, seed=1, num_classes=5)
    np.testing.assert_array_equal(a, b)
    assert [int(a[y == c].sum()) for c in range(5)] == [4] * 5
    assert distill.labelled_mask(y, 1.0, 0, 5).sum() == len(y)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": 0.0},
        {"temperature": -1.0},
        {"alpha": 1.5},
        {"labelled_fraction": 0.0},
        {"student_arch": "vgg"},
        {"student_width": 0},
        {"student_alpha": 0.5},  # a cnn has no width multiplier
        {"student": models.ModelConfig(weights_uri="w.h5")},
    ],
)
def test_bad_config_is_refused(kwargs):
    with pytest.raises(ConfigError, match="DistillConfig"):
        distill.DistillConfig(**kwargs)


def test_student_settings_make_the_student_model_config():
    default = distill.DistillConfig()
    assert default.student_model == models.ModelConfig(arch="cnn", width=8, depth=2, dropout=0.0)
    assert default.train_scratch is False  # the pipeline's default
    # a ModelConfig sets the student settings (library callers, application families)
    config = distill.DistillConfig(student=STUDENT, epochs=3)
    assert (config.student_arch, config.student_width, config.student_depth) == ("mlp", 8, 1)
    assert config.student_model == STUDENT
    assert dataclasses.replace(config, student_width=4).student_model.width == 4


def test_unlabeled_inputs_of_the_wrong_shape_fail_before_training(tmp_path, digits_dir, cnn):
    np.savez(tmp_path / "u.npz", x=np.zeros((5, 4, 4, 1), np.float32))
    with pytest.raises(DataError, match="shape"):
        distill.distill_model(
            cnn,
            digits_dir,
            str(tmp_path / "s"),
            distill.DistillConfig(unlabeled=str(tmp_path / "u.npz")),
        )
    assert not (tmp_path / "s").exists()
