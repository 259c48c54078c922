"""Magnitude pruning with tfmot: schedule, optional 2:4 structure, fine-tuning, strip.

``prune_model`` loads any tf_keras SavedModel, copies it (the input is never
modified), wraps the prunable layers (Conv/Dense kernels) except those kept
dense, fine-tunes on the train split while the schedule raises the sparsity,
strips the pruning wrappers and saves a plain SavedModel. The schedule's
steps come from the number of epochs and the size of the train split.

Also home of the small helpers the other compression modules share
(:func:`load_for_compression`, :func:`finetune`, :func:`kernel_sparsity`).
"""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt import data as data_lib
from tfopt import models
from tfopt._keras import keras, tf
from tfopt.config import check_choice, check_float, check_int
from tfopt.divergence import StopOnDivergence
from tfopt.errors import ConfigError, ModelError
from tfopt.integrity import reporting_corruption

log = logging.getLogger(__name__)

SCHEDULES = ("polynomial", "constant")
AUTO = "auto"  # keep_dense default: the first conv layer and the output layer


# --- helpers shared by prune / lowrank / qat / distill ---------------------------------


def load_for_compression(model_path: str, dataset_dir: str, where: str):
    """Load ``model_path`` (a copy: the file on disk is only read) and the dataset info."""
    info = data_lib.load_info(dataset_dir)
    model = models.load_model(model_path)
    models.check_compatible(model, info.feature_shape, info.num_classes, where)
    return models.clone_model(model), info


def finetune(model: keras.Model, info: data_lib.DatasetInfo, epochs: int, batch_size: int,
             learning_rate: float, seed: int, callbacks=None, loss=None,
             tensorboard_dir: str | None = None) -> dict:
    """Compile and fit ``model`` for a fixed number of epochs on the train split.

    No early stopping: restoring "best" weights would undo a pruning schedule.
    Returns the last epoch's metrics (train and validation). ``tensorboard_dir``
    receives TensorBoard scalars of the fine-tuning.
    """
    callbacks = [StopOnDivergence("fine-tuning", learning_rate), *(callbacks or [])]
    if tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(tensorboard_dir, write_graph=False))
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=loss or keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy"])
    train_ds = data_lib.make_dataset(info, "train", data_lib.InputConfig(
        batch_size=batch_size, shuffle=True, seed=seed))
    val_ds = (data_lib.make_dataset(info, "validation", data_lib.InputConfig(batch_size=256))
              if info.counts.get("validation") else None)
    with reporting_corruption(info, ["train", "validation"]):
        history = model.fit(train_ds, validation_data=val_ds, epochs=epochs,
                            callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2)
    return {k: float(v[-1]) for k, v in history.history.items()}


def steps_per_epoch(info: data_lib.DatasetInfo, batch_size: int) -> int:
    return max(1, math.ceil(info.counts["train"] / batch_size))


def kernel_of(layer) -> tf.Variable | None:
    """The main weight matrix of a Dense/Conv layer (``None`` for other layers)."""
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        kernel = getattr(layer, "depthwise_kernel", None)
    return kernel


def kernel_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of exact zeros in each layer's kernel (layers with a kernel only)."""
    out = {}
    for layer in model.layers:
        kernel = kernel_of(layer)
        if kernel is not None:
            w = kernel.numpy()
            out[layer.name] = float(np.mean(w == 0))
    return out


def model_sparsity(model: keras.Model) -> float:
    """Fraction of exact zeros over every weight of the model."""
    weights = model.get_weights()
    total = sum(w.size for w in weights)
    return float(sum(int(np.sum(w == 0)) for w in weights) / max(total, 1))


# --- pruning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneConfig:
    """How to prune.

    Attributes:
        target_sparsity: fraction of kernel weights set to zero in each pruned layer, in [0, 1).
        schedule: ``polynomial`` (sparsity rises from 0 to the target over the first
            ``ramp_fraction`` of fine-tuning) or ``constant`` (target from step 0).
        structured_2_4: 2:4 structured sparsity (2 zeros in every block of 4 weights along
            the input channels); the sparsity is then 0.5 whatever ``target_sparsity`` says.
        keep_dense: names of layers left dense; ``("auto",)`` = the first conv layer and the
            output layer (the last layer with a kernel); ``()`` prunes every prunable layer.
        epochs / batch_size / learning_rate / seed: fine-tuning.
        ramp_fraction: share of the fine-tuning steps over which a polynomial schedule ramps up.
    """

    target_sparsity: float = 0.8
    schedule: str = "polynomial"
    structured_2_4: bool = False
    keep_dense: tuple[str, ...] = (AUTO,)
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 5e-4
    seed: int = 42
    ramp_fraction: float = 0.6

    def __post_init__(self):
        name = "PruneConfig"
        if isinstance(self.keep_dense, str):
            names = tuple(n.strip() for n in self.keep_dense.split(",") if n.strip())
            object.__setattr__(self, "keep_dense", names)
        object.__setattr__(self, "keep_dense", tuple(self.keep_dense))
        check_float(name, "target_sparsity", self.target_sparsity, 0.0, 1.0, high_open=True)
        check_choice(name, "schedule", self.schedule, SCHEDULES)
        check_int(name, "epochs", self.epochs, 1, 100_000)
        check_int(name, "batch_size", self.batch_size, 1, 1 << 20)
        check_float(name, "learning_rate", self.learning_rate, 0.0, 10.0, low_open=True)
        check_int(name, "seed", self.seed, 0, 2**31 - 1)
        check_float(name, "ramp_fraction", self.ramp_fraction, 0.0, 1.0, low_open=True)

    @property
    def effective_sparsity(self) -> float:
        return 0.5 if self.structured_2_4 else self.target_sparsity


@dataclass(frozen=True)
class PruneResult:
    """What pruning reached.

    Attributes:
        sparsity: zeros over the kernels of the pruned layers (tracks the target).
        model_sparsity: zeros over every weight of the saved model.
        layer_sparsity: per-layer kernel sparsity, pruned and dense layers alike.
        pruned_layers / dense_layers: which layers were pruned or kept dense.
    """

    model_path: str
    target_sparsity: float
    sparsity: float
    model_sparsity: float
    layer_sparsity: dict[str, float]
    pruned_layers: list[str]
    dense_layers: list[str]
    params: int
    metrics: dict
    schedule: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _prunable(layer) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
        PruneRegistry,
    )

    return kernel_of(layer) is not None and PruneRegistry.supports(layer)


def plan_layers(model: keras.Model, keep_dense: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(layers to prune, layers kept dense); fails when nothing would be pruned."""
    with_kernel = [layer for layer in model.layers if kernel_of(layer) is not None]
    names = {layer.name for layer in model.layers}
    keep = set()
    for entry in keep_dense:
        if entry == AUTO:
            convs = [la for la in with_kernel if isinstance(la, keras.layers.Conv2D)]
            if convs:
                keep.add(convs[0].name)
            if with_kernel:
                keep.add(with_kernel[-1].name)
        elif entry not in names:
            raise ConfigError(f"PruneConfig.keep_dense names layer {entry!r}, which the model "
                              f"does not have; layers: {', '.join(sorted(names))}")
        else:
            keep.add(entry)
    prune = [la.name for la in with_kernel if la.name not in keep and _prunable(la)]
    if not prune:
        raise ModelError(
            "the model has no layer to prune: prunable layers (Dense/Conv with a kernel) are "
            f"{[la.name for la in with_kernel if _prunable(la)] or 'none'}, kept dense: "
            f"{sorted(keep) or 'none'}")
    return prune, sorted(keep & {la.name for la in with_kernel})


def make_schedule(config: PruneConfig, total_steps: int, spe: int):
    """The tfmot pruning schedule and its steps, derived from epochs and data size."""
    import tensorflow_model_optimization as tfmot

    frequency = max(1, min(100, spe // 2))
    if config.schedule == "constant":
        sched = tfmot.sparsity.keras.ConstantSparsity(
            config.effective_sparsity, begin_step=0, frequency=frequency)
        return sched, {"kind": "constant", "begin_step": 0, "end_step": -1,
                       "frequency": frequency, "total_steps": total_steps}
    end = max(frequency, int(total_steps * config.ramp_fraction) // frequency * frequency)
    end = min(end, max(frequency, (total_steps - 1) // frequency * frequency))
    sched = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=config.effective_sparsity, begin_step=0,
        end_step=end, frequency=frequency)
    return sched, {"kind": "polynomial", "begin_step": 0, "end_step": end,
                   "frequency": frequency, "total_steps": total_steps}


def prune_model(model_path: str, dataset_dir: str, output_path: str,
                config: PruneConfig = PruneConfig(),
                tensorboard_dir: str | None = None) -> PruneResult:
    """Prune, fine-tune, strip and save; the model at ``model_path`` is only read."""
    import tensorflow_model_optimization as tfmot

    model, info = load_for_compression(model_path, dataset_dir, "prune")
    to_prune, dense = plan_layers(model, config.keep_dense)
    spe = steps_per_epoch(info, config.batch_size)
    total = spe * config.epochs
    schedule, sched_info = make_schedule(config, total, spe)
    notes = []
    if config.structured_2_4 and config.target_sparsity != 0.5:
        notes.append(f"2:4 structured sparsity fixes sparsity at 0.5 "
                     f"(target_sparsity={config.target_sparsity} ignored)")
    kwargs = {"pruning_schedule": schedule}
    if config.structured_2_4:
        kwargs["sparsity_m_by_n"] = (2, 4)

    def wrap(layer):
        if layer.name in to_prune:
            return tfmot.sparsity.keras.prune_low_magnitude(layer, **kwargs)
        return layer  # layers of the private copy: their weights are kept as they are

    try:
        wrapped = keras.models.clone_model(model, clone_function=wrap)
    except ValueError as exc:
        raise ModelError(f"prune: cannot wrap the model for pruning ({exc})") from None
    log.info("pruning %s to %.2f (%s), kept dense: %s", to_prune, config.effective_sparsity,
             config.schedule, dense)
    metrics = finetune(wrapped, info, config.epochs, config.batch_size, config.learning_rate,
                       config.seed, callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
                       tensorboard_dir=tensorboard_dir)
    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    models.save_model(stripped, output_path)
    layer_sparsity = kernel_sparsity(stripped)
    pruned_zeros = sum(int(np.sum(kernel_of(stripped.get_layer(n)).numpy() == 0))
                       for n in to_prune)
    pruned_total = sum(int(np.prod(kernel_of(stripped.get_layer(n)).shape)) for n in to_prune)
    result = PruneResult(
        model_path=output_path, target_sparsity=config.effective_sparsity,
        sparsity=pruned_zeros / pruned_total, model_sparsity=model_sparsity(stripped),
        layer_sparsity=layer_sparsity, pruned_layers=to_prune, dense_layers=dense,
        params=models.count_params(stripped), metrics=metrics, schedule=sched_info,
        notes=notes)
    log.info("pruned: sparsity %.4f (target %.2f), per layer %s", result.sparsity,
             result.target_sparsity, layer_sparsity)
    return result
