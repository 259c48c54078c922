"""Hyperparameter search with Keras Tuner (random, Hyperband, Bayesian optimization).

keras-tuner 1.4.8 does ``import keras`` and, finding Keras 3 installed, runs in
multi-backend mode whatever ``TF_USE_LEGACY_KERAS`` says (that variable only
redirects ``tf.keras``). Its stock ``Tuner`` then rejects tf_keras models
("Expected ... a valid Keras Model instance"). So tfopt uses keras-tuner for
what is framework-free - the oracles (search algorithms), the trial
bookkeeping and the resumable project directory - through a ``BaseTuner``
whose ``run_trial`` builds the model with :func:`tfopt.training.models.build_model`
and trains it with :func:`tfopt.training.train.fit` on :func:`tfopt.data.make_dataset`
pipelines, all tf_keras (that adapter: :mod:`tfopt.training.tuner`; the search space:
:mod:`tfopt.training.search_space`).

The search directory is resumable: calling :func:`tune` again with the same
``output_dir`` reloads the oracle, re-runs a trial that was interrupted (from
its last finished epoch) and only then starts new ones, up to ``max_trials``
trials in all; raising ``max_trials`` extends a finished search.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from tfopt import distribute, fsutil
from tfopt.data import schema
from tfopt.errors import ConfigError, DataError, ModelError
from tfopt.training import train as train_lib
from tfopt.training.search_space import (
    DEFAULT_SEARCH_SPACE,
    PARAMETERS,
    SearchSpace,
    load_hyperparameters,
    train_config_from_hyperparameters,
)
from tfopt.training.tune_config import ALGORITHMS, OBJECTIVES, TuneConfig
from tfopt.training.tuner import PROJECT_NAME, make_oracle, tuner_class

# The search space, the config and the adapter live in their own modules; their public
# names stay importable from here, where the search is.
__all__ = [
    "ALGORITHMS",
    "BEST_FILE",
    "DEFAULT_SEARCH_SPACE",
    "OBJECTIVES",
    "PARAMETERS",
    "PROJECT_NAME",
    "REPORT_FILE",
    "STATE_FILE",
    "TRIALS_FILE",
    "SearchSpace",
    "TuneConfig",
    "TuneResult",
    "load_hyperparameters",
    "train_config_from_hyperparameters",
    "trials_markdown",
    "tune",
]

log = logging.getLogger(__name__)

STATE_FILE = "tune_config.json"
BEST_FILE = "best_hyperparameters.json"
TRIALS_FILE = "trials.json"
REPORT_FILE = "trials.md"


@dataclass(frozen=True)
class TuneResult:
    """Outcome of a search.

    Attributes:
        best_hyperparameters: the best trial's values of the searched names.
        best_trial_id: id of the best trial.
        best_score: the objective of the best trial.
        objective: the objective's name; ``direction``: ``max`` or ``min``.
        trials: every trial of the directory, ordered by id: ``trial_id``,
            ``status``, ``hyperparameters``, ``metrics``, ``score``, ``epochs``, ``seconds``.
        trials_run: trials this call ran (0 when the budget was already met).
        output_dir: the search directory.
    """

    best_hyperparameters: dict
    best_trial_id: str
    best_score: float
    objective: str
    direction: str
    trials: list[dict]
    trials_run: int
    output_dir: str

    def metrics(self) -> dict:
        """Flat numbers for a KFP Metrics artifact."""
        done = [t for t in self.trials if t["status"] == "COMPLETED"]
        best = next(t for t in done if t["trial_id"] == self.best_trial_id)
        out = {f"best_{k}": v for k, v in best["metrics"].items()}
        out.update(
            trials_completed=len(done), trials_total=len(self.trials), trials_run=self.trials_run
        )
        return out

    def to_markdown(self) -> str:
        return trials_markdown(self)


def _check_against_dataset(config: TuneConfig, info: schema.DatasetInfo) -> None:
    if config.objective.startswith("val_") and not info.counts.get("validation"):
        raise DataError(
            f"{info.path}: objective {config.objective!r} needs a validation split "
            "but the dataset has none; use 'accuracy' or 'loss' or re-ingest with "
            "validation_fraction > 0"
        )
    archs = config.search_space.values_of("arch") or (
        () if "arch" in config.search_space.names() else (config.base.model.arch,)
    )
    if "cnn" in archs and len(info.feature_shape) != 3:
        raise ConfigError(
            f"search_space['arch'] includes 'cnn' but the dataset's features "
            f"have shape {tuple(info.feature_shape)}; cnn needs (height, width, "
            "channels): search ['mlp'] only"
        )


def tune(
    dataset_dir: str,
    output_dir: str,
    config: TuneConfig = TuneConfig(),
    tensorboard_dir: str | None = None,
    callbacks: list | None = None,
) -> TuneResult:
    """Search hyperparameters on ``dataset_dir``; resumable in ``output_dir``.

    Args:
        dataset_dir: a dataset artifact written by :func:`tfopt.data.ingest`.
        output_dir: search directory (local or ``gs://``). The same directory
            again continues the search; it holds the keras-tuner project
            (``search/``) and, after each call, ``best_hyperparameters.json``,
            ``trials.json`` and ``trials.md``.
        config: algorithm, budget, objective, search space.
        tensorboard_dir: TensorBoard root; each trial logs to ``trial_<id>/``.
        callbacks: extra tf_keras callbacks added to every trial's ``fit``.

    Raises:
        ConfigError: the config does not fit the dataset, or ``output_dir``
            holds a search with another space, objective or algorithm.
    """
    info = schema.load_info(dataset_dir)
    _check_against_dataset(config, info)
    state_path = os.path.join(output_dir, STATE_FILE)
    identity = config.identity()
    if fsutil.exists(state_path):
        previous = fsutil.read_json(state_path)
        if previous != identity:
            changed = sorted(k for k in identity if identity[k] != previous.get(k))
            raise ConfigError(
                f"{output_dir} holds a search with other settings "
                f"({', '.join(changed)}); resume it with the same settings or "
                "use a new output_dir (only max_trials may change)"
            )
    else:
        fsutil.makedirs(output_dir)
        fsutil.write_json(state_path, identity)
    mean, variance = train_lib.feature_stats(info)
    strategy, _ = distribute.choose_strategy(config.base.memory_growth)
    tuner = tuner_class()(
        make_oracle(config),
        output_dir,
        settings={
            "info": info,
            "config": config,
            "mean": mean,
            "variance": variance,
            "strategy": strategy,
            "tensorboard_dir": tensorboard_dir,
            "callbacks": list(callbacks or []),
        },
    )
    tuner.oracle.max_trials = config.max_trials  # a resumed search takes the new budget
    done_before = len(tuner.oracle.trials)
    log.info("search %s: %d/%d trials done", output_dir, done_before, config.max_trials)
    tuner.search(verbose=0)
    result = _collect(tuner, config, output_dir)
    fsutil.write_json(os.path.join(output_dir, BEST_FILE), result.best_hyperparameters)
    fsutil.write_json(os.path.join(output_dir, TRIALS_FILE), result.trials)
    with fsutil.atomic_file(os.path.join(output_dir, REPORT_FILE)) as fh:
        fh.write(trials_markdown(result))
    log.info(
        "best %s=%.4f with %s", config.objective, result.best_score, result.best_hyperparameters
    )
    return result


def _collect(tuner, config: TuneConfig, output_dir: str) -> TuneResult:
    trials = []
    for trial_id in sorted(tuner.oracle.trials):
        trial = tuner.oracle.trials[trial_id]
        extra_path = os.path.join(tuner.get_trial_dir(trial_id), "tfopt_trial.json")
        extra = fsutil.read_json(extra_path) if fsutil.exists(extra_path) else {}
        metrics = {
            name: float(trial.metrics.get_last_value(name))
            for name in OBJECTIVES
            if trial.metrics.exists(name)
        }
        hps = {k: v for k, v in trial.hyperparameters.values.items() if not k.startswith("tuner/")}
        trials.append(
            {
                "trial_id": trial_id,
                "status": str(trial.status),
                "hyperparameters": hps,
                "metrics": metrics,
                "score": metrics.get(config.objective),
                "epochs": extra.get("epochs"),
                "seconds": extra.get("seconds"),
                "message": (trial.message or "").strip().splitlines()[-1:],
            }
        )
    best = tuner.oracle.get_best_trials(1)
    if not best:
        reasons = [m for t in trials for m in t["message"]]
        raise ModelError(
            f"no trial of the search in {output_dir} completed"
            + (f"; last error: {reasons[-1]}" if reasons else "")
        )
    best_hps = {
        k: v for k, v in best[0].hyperparameters.values.items() if not k.startswith("tuner/")
    }
    return TuneResult(
        best_hyperparameters=best_hps,
        best_trial_id=best[0].trial_id,
        best_score=float(best[0].metrics.get_last_value(config.objective)),
        objective=config.objective,
        direction=OBJECTIVES[config.objective],
        trials=trials,
        trials_run=tuner.trials_run,
        output_dir=output_dir,
    )


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trials_markdown(result: TuneResult) -> str:
    """A Markdown report: the best hyperparameters and a table of every trial."""
    names = list(dict.fromkeys(k for t in result.trials for k in t["hyperparameters"]))
    metric_names = [m for m in OBJECTIVES if any(m in t["metrics"] for t in result.trials)]
    lines = [
        f"# Hyperparameter search ({len(result.trials)} trials)",
        "",
        f"Objective: `{result.objective}` ({result.direction}imize); best "
        f"{_fmt(result.best_score)} with "
        + ", ".join(f"`{k}={_fmt(v)}`" for k, v in result.best_hyperparameters.items()),
        "",
        "| trial | status | " + " | ".join(names + metric_names) + " | epochs | s |",
        "|" + "---|" * (len(names) + len(metric_names) + 4),
    ]
    for t in result.trials:
        mark = " (best)" if t["trial_id"] == result.best_trial_id else ""
        cells = [t["trial_id"] + mark, t["status"]]
        cells += [_fmt(t["hyperparameters"].get(n)) for n in names]
        cells += [_fmt(t["metrics"].get(m)) for m in metric_names]
        cells += [_fmt(t["epochs"]), _fmt(t["seconds"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
