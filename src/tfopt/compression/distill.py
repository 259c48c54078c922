"""Knowledge distillation into a smaller student, reported next to the same student from scratch.

Loss per batch (Hinton et al.)::

    alpha * CE(labels, student) + (1 - alpha) * T^2 * KL(softmax(teacher/T) || softmax(student/T))

tfopt models output probabilities; their logits are taken from the input of a
final softmax ``Activation`` when there is one, else as ``log(p)``
(``softmax(log p / T) == softmax(z / T)`` exactly). The teacher is frozen.

The transfer set is the train split, plus optionally an unlabeled set (a
dataset directory or an ``.npz`` of inputs) and input augmentation (small
random shifts and Gaussian noise); the teacher labels everything on the fly,
and the hard-label term applies only to examples with a label (a mask).
``labelled_fraction`` keeps labels on a seeded, stratified share of the train
split (the little-labelled-data setting). The baseline student is trained on
exactly those labelled examples with the same seed and the same number of steps.

Everything streams through ``tf.data`` (``input_pipeline.examples``: cached as training
caches, shuffled in a bounded buffer), so memory stays bounded whatever the dataset size;
only the train labels (for ``labelled_fraction``) and an ``.npz`` unlabeled set are
held as arrays.
"""

from __future__ import annotations

import functools
import logging
import math
import sys
from collections.abc import Callable
from dataclasses import InitVar, asdict, dataclass, field

import numpy as np

from tfopt import fsutil, registry
from tfopt._keras import keras, tf
from tfopt.compression.common import batch_size_setting, learning_rate_setting, seed_setting
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError, DataError, ModelError
from tfopt.settings import check_settings, setting
from tfopt.training import models, module_file
from tfopt.training.divergence import StopOnDivergence
from tfopt.training.model_config import ARCHITECTURES, WIDTH_ARCHITECTURES

log = logging.getLogger(__name__)

# How the transfer set is read: file order (the label mask lines up), cached as training caches
STREAM = input_pipeline.InputConfig(auto_shard="off")
# The ModelConfig fields of the student, each a ``student_<field>`` setting
STUDENT_FIELDS = ("arch", "width", "depth", "dropout", "alpha")


@dataclass(frozen=True)
class DistillConfig:
    """How to distil: each field is a setting (``tfopt.settings``), described where declared.

    The student is a built-in model made of the ``student_*`` settings (``student_model``).
    ``student=`` (a ``ModelConfig`` or its dict, e.g. ``applications.student_config(...)``)
    sets those settings from a model config instead.
    """

    student_arch: str = setting(
        "cnn", "Architecture of the student (a built-in model).", choices=ARCHITECTURES
    )
    student_width: int = setting(
        8,
        "Units of the first dense layer (mlp) / filters of the first conv layer (cnn) of the "
        "student.",
        low=1,
        high=8192,
        param="student_width",
    )
    student_depth: int = setting(
        2, "Hidden dense layers (mlp) or conv layers (cnn) of the student.", low=1, high=16
    )
    student_dropout: float = setting(
        0.0, "Dropout rate before the student's output layer.", low=0.0, high=1.0, high_open=True
    )
    student_alpha: float = setting(
        1.0,
        "Width multiplier of a mobilenet_v2 / mobilenet_v3_small student (1.0 elsewhere).",
        low=0.0,
        high=4.0,
        low_open=True,
    )
    temperature: float = setting(
        4.0,
        "Softening temperature T of the teacher's and the student's outputs.",
        low=0.0,
        high=1000.0,
        low_open=True,
        param="distill_temperature",
    )
    alpha: float = setting(
        0.1,
        "Weight of the hard-label term (1 - alpha: the teacher's soft labels).",
        low=0.0,
        high=1.0,
        param="distill_alpha",
    )
    labelled_fraction: float = setting(
        1.0,
        "Share of the train split whose labels are used (seeded, stratified).",
        low=0.0,
        high=1.0,
        low_open=True,
    )
    unlabeled: str = setting(
        "",
        "Extra transfer inputs: a dataset directory (its train split) or an .npz with an x "
        "array; '' = none.",
    )
    augment: bool = setting(
        False, "Random shifts (images) and Gaussian noise on the transfer inputs."
    )
    shift: int = setting(1, "Augmentation: largest shift in pixels (images only).", low=0, high=64)
    noise: float = setting(
        0.05, "Augmentation: noise standard deviation, times the feature std.", low=0.0, high=10.0
    )
    epochs: int = setting(
        20, "Training epochs of each student.", low=1, high=100_000, param="distill_epochs"
    )
    batch_size: int = batch_size_setting("Training")
    learning_rate: float = learning_rate_setting(3e-3, "Training")
    seed: int = seed_setting()
    train_scratch: bool = setting(
        False,
        "Also train the same student from scratch on the labelled examples (the comparison "
        "in the report; doubles the step's training time).",
        param="distill_train_scratch",
    )
    student: InitVar[models.ModelConfig | dict | None] = None
    student_model: models.ModelConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self, student):
        if student is not None:
            student = models.ModelConfig(**student) if isinstance(student, dict) else student
            if student.weights_uri:
                raise ConfigError(
                    f"DistillConfig.student.weights_uri={student.weights_uri!r} is not "
                    "allowed: a student starts from random weights"
                )
            for name in STUDENT_FIELDS:
                object.__setattr__(self, f"student_{name}", getattr(student, name))
        check_settings(self)
        if self.student_alpha != 1.0 and self.student_arch not in WIDTH_ARCHITECTURES:
            raise ConfigError(
                f"DistillConfig.student_alpha={self.student_alpha} is not allowed with "
                f"student_arch={self.student_arch!r}: only {', '.join(WIDTH_ARCHITECTURES)} "
                "have a width multiplier (use 1.0)"
            )
        model = models.ModelConfig(**{n: getattr(self, f"student_{n}") for n in STUDENT_FIELDS})
        object.__setattr__(self, "student_model", model)


@dataclass(frozen=True)
class DistillResult:
    """Both students on the test split, and what they were trained on."""

    model_path: str
    teacher_params: int
    student_params: int
    compression: float
    teacher_accuracy: float
    distilled_accuracy: float
    scratch_accuracy: float | None
    labelled_examples: int
    transfer_examples: int
    steps: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def logits_model(model: keras.Model) -> keras.Model:
    """Return a model giving logits: the input of a final softmax, else ``log(p)``."""
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    if isinstance(last, keras.layers.Activation) and getattr(act, "__name__", "") == "softmax":
        return keras.Model(model.inputs, last.input)
    p = model.outputs[0]
    return keras.Model(model.inputs, tf.math.log(tf.clip_by_value(p, 1e-12, 1.0)))


class Distiller(keras.Model):
    """Trains ``student`` against a frozen ``teacher`` on (x, label, mask) batches."""

    def __init__(
        self, student: keras.Model, teacher: keras.Model, temperature: float, alpha: float
    ):
        super().__init__()
        self.student = student
        self.student_logits = logits_model(student)
        self.teacher_logits = logits_model(teacher)
        self.teacher_logits.trainable = False
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def call(self, x, training=False):
        return self.student(x, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def distill_loss(self, teacher_logits, student_logits, labels, mask):
        t = self.temperature
        p_teacher = tf.nn.softmax(teacher_logits / t)
        log_p_student = tf.nn.log_softmax(student_logits / t)
        kl = tf.reduce_sum(p_teacher * (tf.math.log(p_teacher + 1e-12) - log_p_student), -1)
        ce = keras.losses.sparse_categorical_crossentropy(labels, student_logits, from_logits=True)
        hard = tf.reduce_sum(ce * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
        return self.alpha * hard + (1.0 - self.alpha) * t * t * tf.reduce_mean(kl)

    def train_step(self, batch):
        x, labels, mask = batch
        teacher_logits = self.teacher_logits(x, training=False)
        with tf.GradientTape() as tape:
            student_logits = self.student_logits(x, training=True)
            loss = self.distill_loss(teacher_logits, student_logits, labels, mask)
        grads = tape.gradient(loss, self.student.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.student.trainable_variables, strict=True))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


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


def _augment_fn(config: DistillConfig, feature_shape, std: float):
    image = len(feature_shape) == 3 and config.shift > 0

    def aug(x, y, m):
        if image:
            s = config.shift
            padded = tf.pad(x, [[s, s], [s, s], [0, 0]])
            x = tf.image.random_crop(padded, tf.shape(x))
        if config.noise:
            x = x + tf.random.normal(tf.shape(x), stddev=config.noise * std)
        return x, y, m

    return aug


def _steps(n: int, config: DistillConfig) -> int:
    return max(1, math.ceil(n / config.batch_size)) * config.epochs


def _accuracy(model: keras.Model, info) -> float:
    """Test-split accuracy, streamed in batches of 512."""
    hits = count = 0
    for x, y in input_pipeline.iter_arrays(info, "test", batch_size=512):
        hits += int(np.sum(model.predict_on_batch(x).argmax(1) == y))
        count += len(y)
    return hits / max(count, 1)


def _train_mask(info, config: DistillConfig) -> np.ndarray:
    """The label mask of the train split in file order (labels streamed, inputs dropped)."""
    if config.labelled_fraction >= 1.0:
        return np.ones(info.counts["train"], np.float32)
    y = np.concatenate([b for _, b in input_pipeline.iter_arrays(info, "train", 4096)])
    return labelled_mask(y, config.labelled_fraction, config.seed, info.num_classes)


def _shuffled(ds, count: int, config: DistillConfig, augment):
    """Seeded shuffle (a bounded buffer: the whole set up to ``DEFAULT_SHUFFLE_BUFFER``),
    repeat, float32 inputs, augmentation, batches."""
    buffer = max(1, min(count, input_pipeline.DEFAULT_SHUFFLE_BUFFER))
    ds = ds.shuffle(buffer, seed=config.seed, reshuffle_each_iteration=True).repeat()
    ds = ds.map(lambda x, *rest: (tf.cast(x, tf.float32), *rest))
    if augment is not None:
        ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(config.batch_size).prefetch(tf.data.AUTOTUNE)


# A user's student: (feature shape, number of classes) -> an uncompiled tf_keras classifier
# taking raw features and returning probabilities (as tfopt's own models do).
StudentBuilder = Callable[[tuple[int, ...], int], keras.Model]


def _build_student(
    config: DistillConfig, info, mean: float, var: float, builder: StudentBuilder | None = None
) -> keras.Model:
    keras.utils.set_random_seed(config.seed)
    if builder is not None:
        student = builder(tuple(info.feature_shape), info.num_classes)
        if not isinstance(student, keras.Model):
            raise ModelError(
                f"build_student returned {type(student).__name__}, not a tf_keras Model"
            )
        models.check_compatible(student, info.feature_shape, info.num_classes, "build_student")
        return student
    return models.build_model(
        config.student_model, info.feature_shape, info.num_classes, mean, var, name="student"
    )


def distill_model(
    teacher_path: str,
    dataset_dir: str,
    output_path: str,
    config: DistillConfig = DistillConfig(),
    tensorboard_dir: str | None = None,
    build_student: StudentBuilder | None = None,
) -> DistillResult:
    """Distil the teacher at ``teacher_path`` (only read) into a student saved at ``output_path``.

    ``tensorboard_dir`` gets ``distill/`` and ``scratch/`` runs (TensorBoard scalars).
    ``build_student`` (e.g. a module file's) replaces ``config.student_model``; it is called
    once per student with the same seed set. An application family's narrower member is
    ``DistillConfig(student=applications.student_config(teacher_config))``.
    """
    from tfopt.training.tensorboard import tensorboard_subdir
    from tfopt.training.train import feature_stats

    def board(name):
        sub = tensorboard_subdir(tensorboard_dir, name)
        return [keras.callbacks.TensorBoard(sub, write_graph=False)] if sub else []

    info = schema.load_info(dataset_dir)
    teacher = models.load_model(teacher_path)
    models.check_compatible(teacher, info.feature_shape, info.num_classes, "distill teacher")
    mask = _train_mask(info, config)
    # transfer set: every input with its (maybe unused) label and the label mask
    labelled = tf.data.Dataset.zip(
        input_pipeline.examples(info, "train", STREAM), tf.data.Dataset.from_tensor_slices(mask)
    ).map(lambda xy, m: (xy[0], xy[1], m))
    transfer, count, notes = labelled, len(mask), []
    if config.unlabeled:
        xu, extra = unlabeled_examples(config.unlabeled, info.feature_shape)
        if xu.element_spec.dtype != labelled.element_spec[0].dtype:  # uint8 images, float .npz
            transfer = transfer.map(lambda x, y, m: (tf.cast(x, tf.float32), y, m))
            xu = xu.map(lambda x: tf.cast(x, tf.float32))
        no_label = (tf.constant(0, labelled.element_spec[1].dtype), tf.constant(0.0))
        transfer = transfer.concatenate(xu.map(lambda x: (x, *no_label)))
        count += extra
        notes.append(f"{extra} unlabeled transfer examples from {config.unlabeled}")
    mean, var = feature_stats(info)
    if build_student is None:  # a teacher built from a module file brings its student
        user = module_file.bundled(teacher_path)
        if user is not None and user.has_student:
            hparams = {**asdict(config), "student": asdict(config.student_model)}
            del hparams["student_model"]  # the settings, and the student as before: a dict
            build_student = functools.partial(user.build_student, hparams)
    student = _build_student(config, info, mean, var, build_student)
    teacher_params, student_params = models.count_params(teacher), models.count_params(student)
    if student_params >= teacher_params:
        notes.append(
            f"student ({student_params} params) is not smaller than the teacher ({teacher_params})"
        )
    steps = _steps(count, config)
    aug = _augment_fn(config, info.feature_shape, float(np.sqrt(var))) if config.augment else None
    ds = _shuffled(transfer, count, config, aug)
    distiller = Distiller(student, teacher, config.temperature, config.alpha)
    distiller.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    spe = steps // config.epochs
    verbose = 1 if sys.stdout.isatty() else 2
    distiller.fit(
        ds,
        epochs=config.epochs,
        steps_per_epoch=spe,
        verbose=verbose,
        callbacks=[StopOnDivergence("distill", config.learning_rate), *board("distill")],
    )
    models.save_for_dataset(student, output_path, info)

    scratch_acc = None
    if config.train_scratch:
        scratch = _build_student(config, info, mean, var, build_student)
        scratch.compile(
            optimizer=keras.optimizers.Adam(config.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
        )
        keep = labelled if mask.all() else labelled.filter(lambda x, y, m: m > 0)
        scratch_aug = (lambda a, b: aug(a, b, 0.0)[:2]) if aug else None
        sds = _shuffled(keep.map(lambda x, y, m: (x, y)), int(mask.sum()), config, scratch_aug)
        scratch.fit(
            sds,
            epochs=config.epochs,
            steps_per_epoch=spe,
            verbose=verbose,
            callbacks=board("scratch"),
        )
        scratch_acc = _accuracy(scratch, info)
    result = DistillResult(
        model_path=output_path,
        teacher_params=teacher_params,
        student_params=student_params,
        compression=teacher_params / student_params,
        teacher_accuracy=_accuracy(teacher, info),
        distilled_accuracy=_accuracy(student, info),
        scratch_accuracy=scratch_acc,
        labelled_examples=int(mask.sum()),
        transfer_examples=count,
        steps=spe * config.epochs,
        notes=notes,
    )
    log.info(
        "distilled student %.4f vs scratch %s (teacher %.4f), %d labelled of %d",
        result.distilled_accuracy,
        "not trained (train_scratch off)" if scratch_acc is None else f"{scratch_acc:.4f}",
        result.teacher_accuracy,
        result.labelled_examples,
        result.transfer_examples,
    )
    return result


def apply(model_dir, dataset_dir, output_path, config, tensorboard_dir=None) -> registry.Outcome:
    """The technique's entry point (``tfopt.registry.Technique.apply``)."""
    r = distill_model(model_dir, dataset_dir, output_path, config, tensorboard_dir)
    return registry.Outcome(
        metrics={
            k: v
            for k, v in r.to_dict().items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        },
        model={"params": r.student_params, "sparsity": 0.0, "scratch_accuracy": r.scratch_accuracy},
        notes=r.notes,
    )


TECHNIQUE = registry.register(
    registry.Technique(
        name="distill",
        summary="Knowledge distillation into a smaller student (soft labels at a temperature), "
        "optionally compared with the same student trained from scratch.",
        config=DistillConfig,
        apply=apply,
        variants=(
            registry.Variant("distilled", "distill", switch="enable_distillation", task="distill"),
            registry.Variant(
                "distilled_int8", "tflite", base="distilled", settings={"mode": "int8"}
            ),
        ),
        trains=True,
    )
)
