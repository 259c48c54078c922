"""Training: strategy, mixed precision, XLA, early stopping, preemption-safe checkpoints.

``train_model`` reads a dataset artifact, builds (or takes) a model and
writes a SavedModel with the ``serving_default`` signature. A killed run
re-run with the same ``backup_dir`` resumes from its last finished epoch
(``BackupAndRestore``). Under ``MultiWorkerMirroredStrategy`` every worker
saves (saving is a collective op) but only the chief writes to the real
output; the others write to temporary directories that are removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt import distribute, fsutil
from tfopt._keras import keras, tf
from tfopt.checks import check_choice, check_float, check_int
from tfopt.data import input_pipeline, schema
from tfopt.data.integrity import reporting_corruption
from tfopt.errors import ConfigError
from tfopt.training import models, resume
from tfopt.training.divergence import StopOnDivergence

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd", "rmsprop")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """How to train.

    Attributes:
        model: architecture of the built-in model.
        optimizer: ``adam``, ``sgd`` or ``rmsprop``.
        learning_rate: base learning rate (before ``scale_learning_rate``).
        scale_learning_rate: multiply the learning rate by the number of replicas
            (linear scaling rule for the larger global batch).
        epochs: maximum epochs; early stopping may end sooner.
        batch_size: examples per replica; the global batch is this times replicas.
        early_stopping_patience: epochs without val_loss improvement before
            stopping (best weights restored); 0 turns early stopping off.
        seed: seeds weights, dropout and shuffling.
        precision: ``float32``, ``mixed_float16`` (GPUs) or ``mixed_bfloat16``.
        xla: compile the train step with XLA.
        memory_growth: allocate GPU memory as needed instead of all at once.
        profile_batches: ``"start,stop"`` batches to trace with the profiler, or "".
        deterministic_ops: make TensorFlow ops deterministic (slower).
        augment: training-split image augmentation, ``"flip,crop=N,brightness=B"`` (any
            subset; see ``input_pipeline.parse_augment``), seeded by ``seed``; "" = off.
        module_file: a Python file (local or ``gs://``) whose ``build_model(hparams,
            input_shape, num_classes)`` builds the model instead of ``model``
            (``tfopt.training.module_file``); "" = a built-in model.
    """

    model: models.ModelConfig = field(default_factory=models.ModelConfig)
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    scale_learning_rate: bool = False
    epochs: int = 20
    batch_size: int = 64
    early_stopping_patience: int = 3
    seed: int = 42
    precision: str = "float32"
    xla: bool = False
    memory_growth: bool = True
    profile_batches: str = ""
    deterministic_ops: bool = False
    augment: str = ""
    module_file: str = ""

    def __post_init__(self):
        name = "TrainConfig"
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", models.ModelConfig(**self.model))
        check_choice(name, "optimizer", self.optimizer, OPTIMIZERS)
        check_float(name, "learning_rate", self.learning_rate, 0.0, 10.0, low_open=True)
        check_int(name, "epochs", self.epochs, 1, 100_000)
        check_int(name, "batch_size", self.batch_size, 1, 1 << 20)
        check_int(name, "early_stopping_patience", self.early_stopping_patience, 0, 10_000)
        check_int(name, "seed", self.seed, 0, 2**31 - 1)
        check_choice(name, "precision", self.precision, PRECISIONS)
        input_pipeline.parse_augment(self.augment)
        if self.module_file and not str(self.module_file).endswith(".py"):
            raise ConfigError(
                f"TrainConfig.module_file={self.module_file!r} is not allowed: expected a "
                "Python file (.py, local or gs://) or ''"
            )
        if self.profile_batches:
            parts = self.profile_batches.split(",")
            if (
                len(parts) != 2
                or not all(p.strip().isdigit() for p in parts)
                or (int(parts[0]) < 1 or int(parts[1]) < int(parts[0]))
            ):
                raise ConfigError(
                    f"TrainConfig.profile_batches={self.profile_batches!r} is not allowed: "
                    "expected 'start,stop' with 1 <= start <= stop, or ''"
                )


@dataclass(frozen=True)
class TrainResult:
    model_path: str
    metrics: dict
    history: dict
    epochs_run: int
    params: int
    strategy: str
    replicas: int

    def to_dict(self) -> dict:
        return asdict(self)


def make_optimizer(name: str, learning_rate: float):
    return {
        "adam": keras.optimizers.Adam,
        "sgd": keras.optimizers.SGD,
        "rmsprop": keras.optimizers.RMSprop,
    }[name](learning_rate=learning_rate)


def feature_stats(info: schema.DatasetInfo, limit: int = 100_000) -> tuple[float, float]:
    """Mean and variance of the training features (a bounded sample), for Normalization."""
    total, total_sq, count = 0.0, 0.0, 0
    for x, _ in input_pipeline.iter_arrays(info, "train", 4096, limit):
        x = x.astype(np.float64)
        total += x.sum()
        total_sq += np.square(x).sum()
        count += x.size
    mean = total / count
    return float(mean), float(max(total_sq / count - mean * mean, 1e-12))


def _callbacks(config: TrainConfig, backup_dir: str, tensorboard_dir: str | None, timer):
    cbs = [
        StopOnDivergence("train", config.learning_rate),  # before the backup: see there
        keras.callbacks.BackupAndRestore(backup_dir),
        timer,
    ]
    if config.early_stopping_patience:
        cbs.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=config.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    if tensorboard_dir:
        profile = (
            tuple(int(p) for p in config.profile_batches.split(","))
            if config.profile_batches
            else 0
        )
        cbs.append(
            keras.callbacks.TensorBoard(
                tensorboard_dir, profile_batch=profile, histogram_freq=0, write_graph=False
            )
        )
    return cbs


class ThroughputTimer(keras.callbacks.Callback):
    """Training examples per second over the epochs after the first (which pays for tracing).

    Times the span from an epoch's first batch to its last, so the per-epoch
    validation pass and checkpoint are not counted as training cost.
    """

    def __init__(self, examples_per_epoch: int):
        super().__init__()
        self.examples_per_epoch = examples_per_epoch
        self.durations: list[float] = []
        self._first: float | None = None
        self._last = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._first = None

    def on_train_batch_begin(self, batch, logs=None):
        if self._first is None:
            self._first = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if self._first is not None:
            self.durations.append(self._last - self._first)

    @property
    def examples_per_second(self) -> float:
        steady = self.durations[1:] or self.durations
        return self.examples_per_epoch * len(steady) / max(sum(steady), 1e-9)


def fit(
    model: keras.Model,
    info: schema.DatasetInfo,
    config: TrainConfig,
    strategy,
    backup_dir: str,
    tensorboard_dir: str | None = None,
    loss=None,
    metrics=None,
):
    """Compile and fit ``model`` (built under ``strategy``) on the train split."""
    replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    lr = config.learning_rate * (replicas if config.scale_learning_rate else 1)
    with strategy.scope():
        model.compile(
            optimizer=make_optimizer(config.optimizer, lr),
            loss=loss or keras.losses.SparseCategoricalCrossentropy(),
            metrics=metrics or ["accuracy"],
            jit_compile=config.xla,
        )
    train_ds = input_pipeline.make_dataset(
        info,
        "train",
        input_pipeline.InputConfig(
            batch_size=global_batch,
            shuffle=True,
            seed=config.seed,
            **input_pipeline.parse_augment(config.augment),
        ),
    )
    val_ds = input_pipeline.make_dataset(
        info, "validation", input_pipeline.InputConfig(batch_size=global_batch)
    )
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        train_ds = resume.with_known_batches(train_ds, info.counts["train"], global_batch)
    resume.skip_epoch_orders(train_ds, resume.completed_epochs(backup_dir))
    timer = ThroughputTimer(info.counts["train"])
    with reporting_corruption(info, ["train", "validation"]):
        history = model.fit(
            train_ds,
            validation_data=val_ds if info.counts["validation"] else None,
            epochs=config.epochs,
            callbacks=_callbacks(config, backup_dir, tensorboard_dir, timer),
            verbose=1 if sys.stdout.isatty() else 2,
        )
    return history, timer


def train_model(
    dataset_dir: str,
    model_path: str,
    config: TrainConfig = TrainConfig(),
    backup_dir: str | None = None,
    tensorboard_dir: str | None = None,
    model: keras.Model | None = None,
) -> TrainResult:
    """Train a classifier on ``dataset_dir`` and save it to ``model_path``.

    Args:
        dataset_dir: a dataset artifact written by :func:`tfopt.data.ingest`.
        model_path: where the SavedModel goes (written atomically).
        config: training settings.
        backup_dir: ``BackupAndRestore`` directory; a re-run with the same one
            resumes. Defaults to ``<model_path>.backup`` (removed on success).
        tensorboard_dir: TensorBoard scalars (and profiler trace) directory.
        model: train this model instead of building one from ``config.model``.
    """
    info = schema.load_info(dataset_dir)
    keras.utils.set_random_seed(config.seed)
    if config.deterministic_ops:
        tf.config.experimental.enable_op_determinism()
    strategy, cluster = distribute.choose_strategy(config.memory_growth)
    backup_dir = backup_dir or model_path.rstrip("/") + ".backup"
    if not cluster.is_chief:  # only the chief's checkpoints and logs are kept
        # Every worker must pass the SAME backup_dir: on restart all restore the
        # same epoch (a per-worker dir made a restarted worker start from epoch 1
        # while the chief resumed, and the collectives failed). Keras itself sends
        # non-chief checkpoint writes to temporary sub-directories and removes them.
        tensorboard_dir = None
    mean, var = feature_stats(info)
    keras.mixed_precision.set_global_policy(config.precision)
    try:
        with strategy.scope():
            if model is None and config.module_file:
                model = _build_from_module(config, info)
            elif model is None:
                model = models.build_model(
                    config.model, info.feature_shape, info.num_classes, mean, var
                )
            else:
                models.check_compatible(model, info.feature_shape, info.num_classes, "model")
    finally:
        keras.mixed_precision.set_global_policy("float32")
    history, timer = fit(model, info, config, strategy, backup_dir, tensorboard_dir)
    _save_from_any_worker(model, model_path, cluster, info)
    if cluster.is_chief and not fsutil.is_remote(backup_dir):
        shutil.rmtree(backup_dir, ignore_errors=True)
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    best = int(np.argmin(hist["val_loss"])) if hist.get("val_loss") else len(hist["loss"]) - 1
    metrics = {k: vals[best] for k, vals in hist.items()}
    metrics["examples_per_second"] = timer.examples_per_second
    return TrainResult(
        model_path=model_path,
        metrics=metrics,
        history=hist,
        epochs_run=len(hist["loss"]),
        params=models.count_params(model),
        strategy=type(strategy).__name__,
        replicas=strategy.num_replicas_in_sync,
    )


def _build_from_module(config: TrainConfig, info: schema.DatasetInfo) -> keras.Model:
    """The module file's ``build_model``, given every training setting as ``hparams``."""
    from tfopt.training import module_file

    user = module_file.load_module(config.module_file)
    hparams = {**asdict(config.model), **asdict(config)}
    del hparams["model"]
    model = user.build_model(hparams, info.feature_shape, info.num_classes)
    models.check_compatible(model, info.feature_shape, info.num_classes, config.module_file)
    return model


def _save_from_any_worker(
    model: keras.Model, model_path: str, cluster, info: schema.DatasetInfo
) -> None:
    if cluster.is_chief:
        models.save_for_dataset(model, model_path, info)
        return
    tmp = tempfile.mkdtemp(prefix=f"tfopt-worker{cluster.task_index}-")
    try:
        models.save_for_dataset(model, os.path.join(tmp, "model"), info)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
