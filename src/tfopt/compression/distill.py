"""Knowledge distillation into a smaller student, reported next to the same student from scratch.

The technique: its config, ``distill_model`` (the teacher, the students, the report) and
its declaration. The loss and the Keras model that trains with it are in
``compression.distiller`` (the teacher is frozen; logits from the input of a final
softmax, else ``log(p)``); the transfer set (the train split, an optional unlabeled set,
augmentation, ``labelled_fraction``'s label mask; streamed through ``tf.data``) is in
``compression.transfer_set``; the teacher labels it once when its inputs do not change
between epochs (a search's trials and final student share that pass). The baseline student
is trained on exactly the labelled examples with the same seed and the same number of
steps.
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
from tfopt._keras import keras
from tfopt.compression import transfer_set
from tfopt.compression.common import (
    Searchable,
    batch_size_setting,
    learning_rate_setting,
    seed_setting,
)
from tfopt.compression.distiller import Distiller as Distiller
from tfopt.compression.distiller import early_stopping
from tfopt.compression.distiller import logits_model as logits_model
from tfopt.compression.transfer_set import STREAM as STREAM
from tfopt.compression.transfer_set import labelled_mask as labelled_mask
from tfopt.compression.transfer_set import unlabeled_examples as unlabeled_examples
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError, ModelError
from tfopt.settings import check_settings, setting
from tfopt.training import models, module_file
from tfopt.training.divergence import StopOnDivergence
from tfopt.training.model_config import ARCHITECTURES, WIDTH_ARCHITECTURES

log = logging.getLogger(__name__)

# The ModelConfig fields of the student, each a ``student_<field>`` setting
STUDENT_FIELDS = ("arch", "width", "depth", "dropout", "alpha")


@dataclass(frozen=True)
class DistillConfig(Searchable):
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
        search=(32, 2),
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
    patience: int = setting(
        0,
        "Stop once the student's validation accuracy has not improved for this many epochs, "
        "keeping its best epoch's weights (0: every epoch runs; needs a validation split).",
        low=0, high=10_000, param="distill_patience",
    )  # fmt: skip
    batch_size: int = batch_size_setting("Training")
    learning_rate: float = learning_rate_setting(3e-3, "Training")
    seed: int = seed_setting()
    student_init: str = setting(
        "",
        "A student this step saved, to train further instead of a new one (a search's final "
        "continues its winning trial's); '' = a new student.",
    )
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
    """Both students on the test split (None in a search's trial: it reads no test split),
    and what they were trained on."""

    model_path: str
    teacher_params: int
    student_params: int
    compression: float
    teacher_accuracy: float | None
    distilled_accuracy: float | None
    scratch_accuracy: float | None
    labelled_examples: int
    transfer_examples: int
    steps: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _accuracy(model: keras.Model, info, config: DistillConfig) -> float | None:
    """Test-split accuracy, streamed in batches of 512; None in a search's trial."""
    if config.trial:
        return None
    hits = count = 0
    for x, y in input_pipeline.iter_arrays(info, "test", batch_size=512):
        hits += int(np.sum(model.predict_on_batch(x).argmax(1) == y))
        count += len(y)
    return hits / max(count, 1)


def _steps(n: int, config: DistillConfig) -> int:
    return max(1, math.ceil(n / config.batch_size)) * config.epochs


def _verbose() -> int:
    return 1 if sys.stdout.isatty() else 2


def _board(tensorboard_dir: str | None, name: str) -> list:
    """A TensorBoard callback writing the ``name`` run under ``tensorboard_dir``, if any."""
    from tfopt.training.tensorboard import tensorboard_subdir

    sub = tensorboard_subdir(tensorboard_dir, name)
    return [keras.callbacks.TensorBoard(sub, write_graph=False)] if sub else []


# A user's student: (feature shape, number of classes) -> an uncompiled tf_keras classifier
# taking raw features and returning probabilities (as tfopt's own models do).
StudentBuilder = Callable[[tuple[int, ...], int], keras.Model]


def _student_builder(
    teacher_path: str, config: DistillConfig, build_student: StudentBuilder | None
) -> StudentBuilder | None:
    """``build_student``, else the student a teacher built from a module file brings."""
    if build_student is None:
        user = module_file.bundled(teacher_path)
        if user is not None and user.has_student:
            hparams = {**asdict(config), "student": asdict(config.student_model)}
            del hparams["student_model"]  # the settings, and the student as before: a dict
            build_student = functools.partial(user.build_student, hparams)
    return build_student


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


def _initial_student(config: DistillConfig, info, mean, var, builder) -> keras.Model:
    """A new student, or the saved one ``config.student_init`` names."""
    if not config.student_init:
        return _build_student(config, info, mean, var, builder)
    keras.utils.set_random_seed(config.seed)
    student = models.load_model(config.student_init)
    models.check_compatible(student, info.feature_shape, info.num_classes, "student_init")
    return student


def _train_distilled(
    student: keras.Model,
    teacher: keras.Model,
    data: transfer_set.TransferSet,
    info,
    config: DistillConfig,
    augment,
    tensorboard_dir: str | None,
) -> tuple[int, int]:
    """Train ``student`` against ``teacher`` on the transfer set; (the steps per epoch, the
    epochs run)."""
    steps = _steps(data.count, config)
    distiller = Distiller(student, teacher, config.temperature, config.alpha)
    if not config.augment:  # the same inputs every epoch: the teacher labels them once
        data = transfer_set.labelled_once(data, distiller.teacher_logits, teacher, info)
    ds = transfer_set.shuffled(data.examples, data.count, config.seed, config.batch_size, augment)
    distiller.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    spe = steps // config.epochs
    stop, val = early_stopping(info, config.patience)
    history = distiller.fit(
        ds,
        epochs=config.epochs,
        steps_per_epoch=spe,
        validation_data=val,
        verbose=_verbose(),
        callbacks=[
            StopOnDivergence("distill", config.learning_rate),
            *stop,
            *_board(tensorboard_dir, "distill"),
        ],
    )
    return spe, len(history.history["loss"])


def _train_scratch(
    config: DistillConfig,
    info,
    mean: float,
    var: float,
    build_student: StudentBuilder | None,
    data: transfer_set.TransferSet,
    augment,
    spe: int,
    tensorboard_dir: str | None,
) -> float | None:
    """The same student trained from scratch on the labelled examples; its test accuracy."""
    scratch = _build_student(config, info, mean, var, build_student)
    scratch.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    sds = transfer_set.labelled_only(data, config.seed, config.batch_size, augment)
    scratch.fit(
        sds,
        epochs=config.epochs,
        steps_per_epoch=spe,
        verbose=_verbose(),
        callbacks=_board(tensorboard_dir, "scratch"),
    )
    return _accuracy(scratch, info, config)


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
    from tfopt.training.train import feature_stats

    info = schema.load_info(dataset_dir)
    if config.student_init and not fsutil.exists(config.student_init):
        raise ConfigError(
            f"DistillConfig.student_init={config.student_init!r}: no saved student there "
            "(a path this step wrote, or '' for a new student)"
        )
    teacher = models.load_model(teacher_path)
    models.check_compatible(teacher, info.feature_shape, info.num_classes, "distill teacher")
    data = transfer_set.make(info, config.labelled_fraction, config.seed, config.unlabeled)
    notes = list(data.notes)
    mean, var = feature_stats(info)
    build_student = _student_builder(teacher_path, config, build_student)
    student = _initial_student(config, info, mean, var, build_student)
    teacher_params, student_params = models.count_params(teacher), models.count_params(student)
    if student_params >= teacher_params:
        notes.append(
            f"student ({student_params} params) is not smaller than the teacher ({teacher_params})"
        )
    aug = None
    if config.augment:
        std = float(np.sqrt(var))
        aug = transfer_set.augment_fn(info.feature_shape, config.shift, config.noise, std)
    spe, epochs = _train_distilled(student, teacher, data, info, config, aug, tensorboard_dir)
    if epochs < config.epochs:
        notes.append(
            f"early stopping (patience {config.patience}): {epochs} of {config.epochs} epochs, "
            "the best epoch's weights kept"
        )
    models.save_for_dataset(student, output_path, info)
    scratch_acc = None
    if config.train_scratch and not config.trial:
        scratch_acc = _train_scratch(
            config, info, mean, var, build_student, data, aug, spe, tensorboard_dir
        )
    result = DistillResult(
        model_path=output_path,
        teacher_params=teacher_params,
        student_params=student_params,
        compression=teacher_params / student_params,
        teacher_accuracy=_accuracy(teacher, info, config),
        distilled_accuracy=_accuracy(student, info, config),
        scratch_accuracy=scratch_acc,
        labelled_examples=int(data.mask.sum()),
        transfer_examples=data.count,
        steps=spe * epochs,
        notes=notes,
    )
    _log_result(result)
    return result


def _log_result(r: DistillResult) -> None:
    if r.distilled_accuracy is None:  # a search's trial: the search judges it
        return
    log.info(
        "distilled student %.4f vs scratch %s (teacher %.4f), %d labelled of %d",
        r.distilled_accuracy,
        "not trained (train_scratch off)"
        if r.scratch_accuracy is None
        else f"{r.scratch_accuracy:.4f}",
        r.teacher_accuracy,
        r.labelled_examples,
        r.transfer_examples,
    )


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
        resumes="student_init",
    )
)
