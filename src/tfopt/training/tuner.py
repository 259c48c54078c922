"""tfopt's keras-tuner adapter: the oracle per algorithm, and a ``BaseTuner`` whose trials
build tf_keras models with :mod:`tfopt.training.models` and train them with
:func:`tfopt.training.train.fit` (see :mod:`tfopt.training.tune` for why keras-tuner's
own ``Tuner`` is not used).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time

import numpy as np

from tfopt import fsutil
from tfopt._keras import keras
from tfopt.data import input_pipeline
from tfopt.data.integrity import reporting_corruption
from tfopt.errors import ModelError
from tfopt.training import models, tensorboard
from tfopt.training import train as train_lib
from tfopt.training.search_space import train_config_from_hyperparameters
from tfopt.training.tune_config import OBJECTIVES, TuneConfig

log = logging.getLogger(__name__)

PROJECT_NAME = "search"


def make_oracle(config: TuneConfig):
    import keras_tuner

    objective = keras_tuner.Objective(config.objective, OBJECTIVES[config.objective])
    common = {
        "objective": objective,
        "seed": config.base.seed,
        "hyperparameters": config.search_space.hyperparameters(),
        "allow_new_entries": False,
        "tune_new_entries": False,
        "max_consecutive_failed_trials": config.max_consecutive_failed_trials,
    }
    if config.algorithm == "random":
        return keras_tuner.oracles.RandomSearchOracle(max_trials=config.max_trials, **common)
    if config.algorithm == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            max_trials=config.max_trials,
            num_initial_points=min(3, max(1, config.max_trials // 2)),
            **common,
        )
    # Brackets repeat until the trial budget is spent (hyperband_iterations=None).
    oracle = keras_tuner.oracles.HyperbandOracle(
        max_epochs=config.base.epochs,
        factor=config.hyperband_factor,
        hyperband_iterations=None,
        **common,
    )
    oracle.max_trials = config.max_trials
    return oracle


def tuner_class():
    import keras_tuner

    class TfoptTuner(keras_tuner.engine.base_tuner.BaseTuner):
        """Trains tf_keras models built by tfopt for each trial."""

        def __init__(self, oracle, directory, settings: dict):
            self.settings = settings
            self.trials_run = 0
            super().__init__(
                oracle,
                hypermodel=None,
                directory=directory,
                project_name=PROJECT_NAME,
                overwrite=False,
            )

        def run_trial(self, trial, *args, **kwargs):
            self.trials_run += 1
            return _run_trial(self, trial, **self.settings)

    return TfoptTuner


def _run_trial(
    tuner,
    trial,
    info,
    config: TuneConfig,
    mean: float,
    variance: float,
    strategy,
    tensorboard_dir: str | None,
    callbacks: list,
) -> dict:
    values = dict(trial.hyperparameters.values)
    chosen = {k: v for k, v in values.items() if not k.startswith("tuner/")}
    train_config = train_config_from_hyperparameters(chosen, config.base)
    epochs = int(values.get("tuner/epochs", train_config.epochs))
    initial_epoch = int(values.get("tuner/initial_epoch", 0))
    train_config = dataclasses.replace(train_config, epochs=max(epochs - initial_epoch, 1))
    trial_dir = tuner.get_trial_dir(trial.trial_id)
    log.info("trial %s: %s (%d epochs)", trial.trial_id, chosen, train_config.epochs)
    keras.backend.clear_session()
    keras.utils.set_random_seed(train_config.seed)
    start = time.perf_counter()
    with strategy.scope():
        model = models.build_model(
            train_config.model,
            info.feature_shape,
            info.num_classes,
            mean,
            variance,
            name=f"trial_{trial.trial_id}",
        )
    parent = values.get("tuner/trial_id")
    if parent:  # Hyperband: continue the parent trial's training
        model.load_weights(os.path.join(tuner.get_trial_dir(parent), "weights", "ckpt"))
    history = _fit(
        model,
        info,
        train_config,
        strategy,
        os.path.join(trial_dir, "backup"),
        tensorboard.tensorboard_subdir(tensorboard_dir, f"trial_{trial.trial_id}"),
        callbacks,
    )
    if config.algorithm == "hyperband":
        model.save_weights(os.path.join(trial_dir, "weights", "ckpt"))
    hist = {k: [float(v) for v in vals] for k, vals in history.history.items()}
    if config.objective not in hist:
        raise ModelError(
            f"trial {trial.trial_id} did not log {config.objective!r}; logged: {', '.join(hist)}"
        )
    series = np.asarray(hist[config.objective])
    best = int(np.argmax(series) if OBJECTIVES[config.objective] == "max" else np.argmin(series))
    fsutil.write_json(
        os.path.join(trial_dir, "tfopt_trial.json"),
        {
            "epochs": len(series) + initial_epoch,
            "best_epoch": best + 1 + initial_epoch,
            "seconds": time.perf_counter() - start,
            "history": hist,
        },
    )
    return {k: hist[k][best] for k in OBJECTIVES if k in hist}


def _fit(
    model,
    info,
    config: train_lib.TrainConfig,
    strategy,
    backup_dir: str,
    tensorboard_dir: str | None,
    callbacks: list,
):
    """Compile and fit one trial's model; an interrupted trial resumes from ``backup_dir``."""
    with strategy.scope():
        model.compile(
            optimizer=train_lib.make_optimizer(config.optimizer, config.learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(),
            metrics=["accuracy"],
            jit_compile=config.xla,
        )
    batch = config.batch_size * strategy.num_replicas_in_sync
    train_ds = input_pipeline.make_dataset(
        info, "train", input_pipeline.InputConfig(batch_size=batch, shuffle=True, seed=config.seed)
    )
    val_ds = (
        input_pipeline.make_dataset(
            info, "validation", input_pipeline.InputConfig(batch_size=batch)
        )
        if info.counts.get("validation")
        else None
    )
    cbs = [keras.callbacks.BackupAndRestore(backup_dir)]
    if config.early_stopping_patience:
        cbs.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss" if val_ds is not None else "loss",
                patience=config.early_stopping_patience,
                restore_best_weights=True,
            )
        )
    if tensorboard_dir:
        cbs.append(
            keras.callbacks.TensorBoard(
                tensorboard_dir, histogram_freq=0, write_graph=False, profile_batch=0
            )
        )
    with reporting_corruption(info, ["train", "validation"]):
        return model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            callbacks=cbs + list(callbacks),
            verbose=0,
        )
