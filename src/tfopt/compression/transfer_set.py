"""The transfer set of distillation: what the student learns from, streamed.

The transfer set is the train split, plus optionally an unlabeled set (a
dataset directory or an ``.npz`` of inputs) and input augmentation (small
random shifts and Gaussian noise). The teacher labels it once (:func:`with_teacher`) when
the inputs are the same every epoch and its outputs fit in memory, else on the fly.
Each example is ``(x, label, mask)``: the mask says whether its label is used.
``labelled_fraction`` keeps labels on a seeded, stratified share of the train
split (the little-labelled-data setting); the from-scratch student is trained on
exactly those labelled examples.

Everything streams through ``tf.data`` (``input_pipeline.examples``: cached as training
caches, shuffled in a bounded buffer), so memory stays bounded whatever the dataset size;
only the train labels (for ``labelled_fraction``) and an ``.npz`` unlabeled set are
held as arrays.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np

from tfopt import fsutil
from tfopt._keras import tf
from tfopt.data import input_pipeline, schema
from tfopt.errors import DataError

# How the transfer set is read: file order (the label mask lines up), cached as training caches
STREAM = input_pipeline.InputConfig(auto_shard="off")

# The teacher's outputs on the whole transfer set are held in memory up to this size: one
# pass of the teacher instead of one in every training step (a third of a small student's)
OUTPUTS_LIMIT_BYTES = 512 << 20


@dataclass(frozen=True)
class TransferSet:
    """The train split and the whole transfer set, as ``(x, label, mask)`` datasets."""

    labelled: tf.data.Dataset  # the train split in file order, every label with its mask
    examples: tf.data.Dataset  # ``labelled``, then the unlabeled inputs (label 0, mask 0)
    mask: np.ndarray  # the label mask of the train split
    count: int  # examples in the transfer set
    notes: list[str]


def labelled_mask(y: np.ndarray, fraction: float, seed: int, num_classes: int) -> np.ndarray:
    """A seeded, per-class share of ``fraction`` of the examples (at least one per class)."""
    if fraction >= 1.0:
        return np.ones(len(y), np.float32)
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(y), np.float32)
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)
        if len(idx):
            take = max(1, round(len(idx) * fraction))
            mask[rng.choice(idx, take, replace=False)] = 1.0
    return mask


def unlabeled_examples(source: str, feature_shape: tuple[int, ...]):
    """Extra transfer inputs as ``(tf.data.Dataset of x, count)``: a dataset directory's
    train split (streamed) or an ``.npz`` (``x`` or its only array, held in memory)."""
    if source.endswith(".npz"):
        if not fsutil.exists(source):
            raise DataError(f"{source}: unlabeled .npz not found")
        with np.load(source) as npz:
            key = "x" if "x" in npz.files else (npz.files[0] if len(npz.files) == 1 else None)
            if key is None:
                raise DataError(f"{source}: expected an array 'x' (has {npz.files})")
            x = np.asarray(npz[key], np.float32)
        shape, count = tuple(x.shape[1:]), len(x)
        ds = tf.data.Dataset.from_tensor_slices(x)
    else:
        info = schema.load_info(source)
        shape, count = tuple(info.feature_shape), info.counts["train"]
        ds = input_pipeline.examples(info, "train", STREAM).map(lambda x, _: x)
    if shape != tuple(feature_shape):
        raise DataError(
            f"{source}: unlabeled inputs have shape {shape}; the model takes {tuple(feature_shape)}"
        )
    return ds, count


def train_mask(info, fraction: float, seed: int) -> np.ndarray:
    """The label mask of the train split in file order (labels streamed, inputs dropped)."""
    if fraction >= 1.0:
        return np.ones(info.counts["train"], np.float32)
    y = np.concatenate([b for _, b in input_pipeline.iter_arrays(info, "train", 4096)])
    return labelled_mask(y, fraction, seed, info.num_classes)


def make(info, labelled_fraction: float, seed: int, unlabeled: str) -> TransferSet:
    """The train split with its label mask, then the inputs of ``unlabeled`` ('' = none)."""
    mask = train_mask(info, labelled_fraction, seed)
    # transfer set: every input with its (maybe unused) label and the label mask
    labelled = tf.data.Dataset.zip(
        input_pipeline.examples(info, "train", STREAM), tf.data.Dataset.from_tensor_slices(mask)
    ).map(lambda xy, m: (xy[0], xy[1], m))
    transfer, count, notes = labelled, len(mask), []
    if unlabeled:
        xu, extra = unlabeled_examples(unlabeled, info.feature_shape)
        if xu.element_spec.dtype != labelled.element_spec[0].dtype:  # uint8 images, float .npz
            transfer = transfer.map(lambda x, y, m: (tf.cast(x, tf.float32), y, m))
            xu = xu.map(lambda x: tf.cast(x, tf.float32))
        no_label = (tf.constant(0, labelled.element_spec[1].dtype), tf.constant(0.0))
        transfer = transfer.concatenate(xu.map(lambda x: (x, *no_label)))
        count += extra
        notes.append(f"{extra} unlabeled transfer examples from {unlabeled}")
    return TransferSet(labelled, transfer, mask, count, notes)


def outputs_fit(count: int, num_classes: int) -> bool:
    """Whether the teacher's float32 outputs on ``count`` examples fit the memory bound."""
    return count * num_classes * 4 <= OUTPUTS_LIMIT_BYTES


def teacher_outputs(data: TransferSet, logits_model) -> np.ndarray:
    """``logits_model``'s outputs on every transfer input, in the transfer set's order."""
    inputs = data.examples.map(lambda x, *_: tf.cast(x, tf.float32)).batch(512)
    return np.asarray(logits_model.predict(inputs, verbose=0), np.float32)


# The last teacher's outputs on the last transfer set (train split only), keyed by the
# teacher's weights and the data's content: a search's trials and final student share them.
_outputs: dict[tuple[str, str], np.ndarray] = {}


def labelled_once(data: TransferSet, logits_model, teacher, info) -> TransferSet:
    """``data`` (unaugmented) with the teacher's outputs (``logits_model``'s) taken once,
    kept for the next call on the same ``teacher`` weights and data content; ``data`` as
    it is when they do not fit ``OUTPUTS_LIMIT_BYTES``."""
    if not outputs_fit(data.count, info.num_classes):
        return data
    if data.count != len(data.mask):  # unlabeled inputs, not in the key: labelled afresh
        return with_teacher(data, teacher_outputs(data, logits_model))
    digest = hashlib.sha256()
    for weights in teacher.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    key = (digest.hexdigest(), info.content_sha256)
    if key not in _outputs:
        _outputs.clear()
        _outputs[key] = teacher_outputs(data, logits_model)
    return with_teacher(data, _outputs[key])


def with_teacher(data: TransferSet, outputs: np.ndarray) -> TransferSet:
    """``data`` whose examples carry the teacher's ``outputs`` as a fourth element
    (``distiller.Distiller`` then runs no teacher pass); only for unaugmented inputs."""
    if len(outputs) != data.count:
        raise ValueError(f"{len(outputs)} teacher outputs for {data.count} transfer examples")
    given = tf.data.Dataset.from_tensor_slices(outputs)
    examples = tf.data.Dataset.zip(data.examples, given).map(lambda e, t: (*e, t))
    return dataclasses.replace(data, examples=examples)


def augment_fn(feature_shape, shift: int, noise: float, std: float):
    """Random shifts of up to ``shift`` pixels (images) and Gaussian noise of ``noise`` times
    ``std`` on the inputs of ``(x, label, mask)`` examples."""
    image = len(feature_shape) == 3 and shift > 0

    def aug(x, y, m):
        if image:
            s = shift
            padded = tf.pad(x, [[s, s], [s, s], [0, 0]])
            x = tf.image.random_crop(padded, tf.shape(x))
        if noise:
            x = x + tf.random.normal(tf.shape(x), stddev=noise * std)
        return x, y, m

    return aug


def shuffled(ds, count: int, seed: int, batch_size: int, augment):
    """Seeded shuffle (a bounded buffer: the whole set up to ``DEFAULT_SHUFFLE_BUFFER``),
    repeat, float32 inputs, augmentation, batches."""
    buffer = max(1, min(count, input_pipeline.DEFAULT_SHUFFLE_BUFFER))
    ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(lambda x, *rest: (tf.cast(x, tf.float32), *rest))
    if augment is not None:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def labelled_only(data: TransferSet, seed: int, batch_size: int, augment):
    """The labelled train examples as ``(x, label)`` batches (the from-scratch student's set),
    shuffled and augmented as the transfer set is."""
    keep = data.labelled if data.mask.all() else data.labelled.filter(lambda x, y, m: m > 0)
    scratch_aug = (lambda a, b: augment(a, b, 0.0)[:2]) if augment else None
    pairs = keep.map(lambda x, y, m: (x, y))
    return shuffled(pairs, int(data.mask.sum()), seed, batch_size, scratch_aug)
