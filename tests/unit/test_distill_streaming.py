"""Issue 16: distillation's transfer set and int8 calibration stream through tf.data.

uint8 images stay uint8 until fed (cache and shuffle buffer 4x smaller); an unlabeled
dataset directory streams too; the calibration sample is seeded and spans the split.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from tfopt._keras import keras, tf
from tfopt.compression import distill, tflite, transfer_set
from tfopt.data import ingest, input_pipeline, schema
from tfopt.training import models, train

STUDENT = models.ModelConfig(arch="mlp", width=8, depth=1, dropout=0.0)


@pytest.fixture(scope="module")
def uint8_dir(tmp_path_factory) -> str:
    """The digits as uint8 8x8x1 images (0..240), ingested from an .npz."""
    tmp = tmp_path_factory.mktemp("uint8")
    digits = load_digits()
    x = (digits.images * 15).astype(np.uint8)[..., None]
    np.savez(tmp / "digits.npz", x=x, y=digits.target.astype(np.int64))
    out = str(tmp / "data")
    ingest.ingest(out, ingest.IngestConfig(source=str(tmp / "digits.npz")))
    return out


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, uint8_dir) -> str:
    path = str(tmp_path_factory.mktemp("teacher") / "model")
    config = train.TrainConfig(
        model=models.ModelConfig(arch="mlp", width=32, depth=1),
        epochs=10,
        early_stopping_patience=0,
        learning_rate=3e-3,
    )
    train.train_model(uint8_dir, path, config)
    return path


def test_examples_stream_the_split_as_stored_in_file_order(uint8_dir):
    info = schema.load_info(uint8_dir)
    assert info.feature_dtype == "uint8"
    ds = input_pipeline.examples(info, "train")
    assert ds.element_spec[0].dtype.name == "uint8"
    xs, ys = zip(*ds.as_numpy_iterator(), strict=True)
    x, y = input_pipeline.load_arrays(info, "train")  # float32, the same order
    np.testing.assert_array_equal(np.stack(xs).astype(np.float32), x)
    np.testing.assert_array_equal(np.array(ys), y)


def test_distill_streams_uint8_images_with_a_dataset_dir_and_a_float_npz(
    tmp_path, uint8_dir, teacher
):
    info = schema.load_info(uint8_dir)
    n = info.counts["train"]
    x_val, _ = input_pipeline.load_arrays(info, "validation")
    np.savez(tmp_path / "u.npz", x=x_val)  # float32 beside uint8: both fed as float32
    results = {}
    for name, unlabeled in (("dir", uint8_dir), ("npz", str(tmp_path / "u.npz"))):
        results[name] = distill.distill_model(
            teacher,
            uint8_dir,
            str(tmp_path / name),
            distill.DistillConfig(
                student=STUDENT,
                labelled_fraction=0.2,
                unlabeled=unlabeled,
                epochs=5,
                learning_rate=1e-2,
                train_scratch=False,
            ),
        )
    assert results["dir"].transfer_examples == 2 * n
    assert results["npz"].transfer_examples == n + len(x_val)
    for r in results.values():
        assert r.labelled_examples == pytest.approx(0.2 * n, abs=10)
        assert r.steps == 5 * -(-r.transfer_examples // 64)
        # measured: teacher 0.955, students 0.907 (dir) / 0.874 (npz); chance is 0.1
        assert r.teacher_accuracy > 0.85 and r.distilled_accuracy > 0.75, r


def test_representative_dataset_is_seeded_decoded_and_spans_the_split(digits_dir):
    info = schema.load_info(digits_dir)
    x, y = input_pipeline.load_arrays(info, "train")
    gen = tflite.representative_dataset(digits_dir, 50)
    first, again = [s[0] for s in gen()], [s[0] for s in gen()]
    assert len(first) == 50
    assert all(s.shape == (1, 8, 8, 1) and s.dtype == np.float32 for s in first)
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    rows = {r.tobytes(): i for i, r in enumerate(x)}
    index = [rows[s[0].tobytes()] for s in first]  # every sample is a training example
    assert len(set(index)) == 50 and max(index) >= 100  # not the first 50 in file order
    assert len(set(y[index])) == info.num_classes


def test_teacher_outputs_taken_once_ride_with_their_examples_through_the_shuffle(
    uint8_dir, teacher
):
    info = schema.load_info(uint8_dir)
    data = transfer_set.make(info, 1.0, 0, "")
    logits = distill.logits_model(models.load_model(teacher))
    labelled = transfer_set.with_teacher(data, transfer_set.teacher_outputs(data, logits))
    batches = transfer_set.shuffled(labelled.examples, labelled.count, 3, 64, None).take(3)
    x, y, _, given = (np.concatenate(p) for p in zip(*batches, strict=True))
    _, y_file = input_pipeline.load_arrays(info, "train")
    assert not np.array_equal(y, y_file[: len(y)])  # shuffled, not file order
    np.testing.assert_allclose(given, logits.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="3 teacher outputs for"):
        transfer_set.with_teacher(data, np.zeros((3, info.num_classes), np.float32))


def test_a_step_on_given_teacher_outputs_is_the_step_on_the_teacher_pass(uint8_dir, teacher):
    info = schema.load_info(uint8_dir)
    x, y = input_pipeline.load_arrays(info, "train")
    x, y = x[:64], y[:64]
    mask = np.ones(len(y), np.float32)
    teach = models.load_model(teacher)
    given = distill.logits_model(teach).predict(x, verbose=0)
    start, after = None, []
    for batch in ((x, y, mask), (x, y, mask, given), (x, y, mask, given[:, ::-1].copy())):
        keras.utils.set_random_seed(0)
        student = models.build_model(STUDENT, info.feature_shape, info.num_classes, 0.0, 1.0)
        start = start or student.get_weights()
        fit = distill.Distiller(student, teach, temperature=4.0, alpha=0.1)
        fit.compile(optimizer=keras.optimizers.SGD(0.1))
        fit.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
        after.append(student.get_weights())
    for before, a, b in zip(start, after[0], after[1], strict=True):
        assert not np.allclose(a, before)  # the step moved the weights
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(after[0][-1], after[2][-1])  # the given outputs are what it learns


def test_patience_stops_a_student_whose_validation_accuracy_stalls(tmp_path, uint8_dir, teacher):
    config = distill.DistillConfig(
        student=STUDENT, epochs=40, patience=1, learning_rate=1e-2, train_scratch=False
    )
    r = distill.distill_model(teacher, uint8_dir, str(tmp_path / "s"), config)
    spe = -(-r.transfer_examples // 64)
    (note,) = [n for n in r.notes if n.startswith("early stopping (patience 1): ")]
    epochs = int(note.split(": ")[1].split(" of ")[0])
    assert 2 <= epochs < 40 and r.steps == epochs * spe  # the steps it ran, not 40 epochs'
    assert r.distilled_accuracy > 0.75  # the best epoch's weights, not a stalled last one
