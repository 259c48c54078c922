"""Fail a training step whose loss stops being finite, before a model is written.

Keras' ``TerminateOnNaN`` only stops training, after which a step would save and
pass on a model of NaN weights. The check runs at the end of each epoch (the
epoch's mean loss is NaN/inf if any batch's was), so it costs no per-batch sync;
place it before ``BackupAndRestore`` so a diverged epoch is never backed up.
"""

from __future__ import annotations

import math

from tfopt._keras import keras
from tfopt.errors import TrainingError


class StopOnDivergence(keras.callbacks.Callback):
    def __init__(self, where: str, learning_rate: float):
        super().__init__()
        self.where = where
        self.learning_rate = learning_rate

    def on_epoch_end(self, epoch, logs=None):
        bad = {
            k: float(v)
            for k, v in (logs or {}).items()
            if k.endswith("loss") and not math.isfinite(float(v))
        }
        if bad:
            raise TrainingError(
                f"{self.where}: training diverged in epoch {epoch + 1}: "
                + ", ".join(f"{k} = {v}" for k, v in sorted(bad.items()))
                + f" (learning_rate {self.learning_rate:g}). Lower the learning rate, or "
                "look for NaN/inf or extreme feature values in the data; no model was written."
            )
