"""How a hyperparameter search runs (:class:`TuneConfig`): algorithm, budget, objective, space.

Its own module so that the search (:mod:`tfopt.training.tune`) and the keras-tuner adapter
(:mod:`tfopt.training.tuner`) both import it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from tfopt.checks import check_choice, check_int, config_from_dict
from tfopt.errors import ConfigError
from tfopt.training import train as train_lib
from tfopt.training.search_space import DEFAULT_SEARCH_SPACE, SearchSpace

ALGORITHMS = ("random", "hyperband", "bayesian")
# Metrics every trial logs (compiled with metrics=["accuracy"]) and their direction.
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}


def _default_base() -> train_lib.TrainConfig:
    return train_lib.TrainConfig(epochs=10, early_stopping_patience=3)


@dataclass(frozen=True)
class TuneConfig:
    """How to search.

    Attributes:
        algorithm: ``random``, ``hyperband`` or ``bayesian`` (Gaussian-process
            Bayesian optimization).
        max_trials: trial budget (>= 1): trials in the whole search, counting
            those of earlier calls on the same directory.
        objective: metric to optimize, one every trial logs: ``val_accuracy``
            (maximized), ``val_loss``, ``accuracy``, ``loss``.
        search_space: a :class:`SearchSpace` or its params-file dict.
        base: training settings for what the space does not set; its
            ``epochs`` is the per-trial maximum (Hyperband's ``max_epochs``)
            and its early stopping applies to every trial.
        hyperband_factor: Hyperband's reduction factor (>= 2).
        max_consecutive_failed_trials: stop the search after this many
            failing trials in a row.
    """

    algorithm: str = "random"
    max_trials: int = 6
    objective: str = "val_accuracy"
    search_space: SearchSpace = field(
        default_factory=lambda: SearchSpace.from_dict(DEFAULT_SEARCH_SPACE)
    )
    base: train_lib.TrainConfig = field(default_factory=_default_base)
    hyperband_factor: int = 3
    max_consecutive_failed_trials: int = 3

    def __post_init__(self):
        name = "TuneConfig"
        check_choice(name, "algorithm", self.algorithm, ALGORITHMS)
        check_int(name, "max_trials", self.max_trials, 1, 100_000)
        check_choice(name, "objective", self.objective, tuple(OBJECTIVES))
        if not isinstance(self.search_space, SearchSpace):
            object.__setattr__(self, "search_space", SearchSpace.from_dict(self.search_space))
        if isinstance(self.base, dict):
            object.__setattr__(self, "base", config_from_dict(train_lib.TrainConfig, self.base))
        check_int(name, "hyperband_factor", self.hyperband_factor, 2, 100)
        check_int(
            name, "max_consecutive_failed_trials", self.max_consecutive_failed_trials, 1, 100_000
        )
        if self.base.profile_batches:
            raise ConfigError(
                f"{name}.base.profile_batches={self.base.profile_batches!r} is "
                "not allowed: expected '' (profile the train step instead)"
            )

    def identity(self) -> dict:
        """What a resumed search must share with the one that made the directory, in JSON's
        types (lists, not tuples), as ``tune_config.json`` holds it."""
        return _plain(
            {
                "algorithm": self.algorithm,
                "objective": self.objective,
                "search_space": self.search_space.to_dict(),
                "hyperband_factor": self.hyperband_factor,
                "base": dataclasses.asdict(self.base),
            }
        )


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj
