"""What every weight-training technique shares: loading a model for compression, fine-tuning,
kernel sparsity."""

from __future__ import annotations

import logging
import math
import sys

import numpy as np

from tfopt._keras import keras, tf
from tfopt.data import input_pipeline, schema
from tfopt.data.integrity import reporting_corruption
from tfopt.training import models
from tfopt.training.divergence import StopOnDivergence

log = logging.getLogger(__name__)


def load_for_compression(model_path: str, dataset_dir: str, where: str):
    """Load ``model_path`` (a copy: the file on disk is only read) and the dataset info."""
    info = schema.load_info(dataset_dir)
    model = models.load_model(model_path)
    models.check_compatible(model, info.feature_shape, info.num_classes, where)
    return models.clone_model(model), info


def finetune(
    model: keras.Model,
    info: schema.DatasetInfo,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    callbacks=None,
    loss=None,
    tensorboard_dir: str | None = None,
) -> dict:
    """Compile and fit ``model`` for a fixed number of epochs on the train split.

    No early stopping: restoring "best" weights would undo a pruning schedule.
    Returns the last epoch's metrics (train and validation). ``tensorboard_dir``
    receives TensorBoard scalars of the fine-tuning.
    """
    callbacks = [StopOnDivergence("fine-tuning", learning_rate), *(callbacks or [])]
    if tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(tensorboard_dir, write_graph=False))
    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss or keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    train_ds = input_pipeline.make_dataset(
        info, "train", input_pipeline.InputConfig(batch_size=batch_size, shuffle=True, seed=seed)
    )
    val_ds = (
        input_pipeline.make_dataset(info, "validation", input_pipeline.InputConfig(batch_size=256))
        if info.counts.get("validation")
        else None
    )
    with reporting_corruption(info, ["train", "validation"]):
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
    return {k: float(v[-1]) for k, v in history.history.items()}


def steps_per_epoch(info: schema.DatasetInfo, batch_size: int) -> int:
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
