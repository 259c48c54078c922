"""Hyperparameter search with Keras Tuner (random, Hyperband, Bayesian optimization).

keras-tuner 1.4.8 does ``import keras`` and, finding Keras 3 installed, runs in
multi-backend mode whatever ``TF_USE_LEGACY_KERAS`` says (that variable only
redirects ``tf.keras``). Its stock ``Tuner`` then rejects tf_keras models
("Expected ... a valid Keras Model instance"). So tfopt uses keras-tuner for
what is framework-free - the oracles (search algorithms), the trial
bookkeeping and the resumable project directory - through a ``BaseTuner``
whose ``run_trial`` builds the model with :func:`tfopt.training.models.build_model`
and trains it with :func:`tfopt.training.train.fit` on :func:`tfopt.data.make_dataset`
pipelines, all tf_keras.

The search directory is resumable: calling :func:`tune` again with the same
``output_dir`` reloads the oracle, re-runs a trial that was interrupted (from
its last finished epoch) and only then starts new ones, up to ``max_trials``
trials in all; raising ``max_trials`` extends a finished search.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tfopt import distribute, fsutil
from tfopt._keras import keras
from tfopt.checks import check_choice, check_int, config_from_dict
from tfopt.data import input_pipeline, schema
from tfopt.data.integrity import reporting_corruption
from tfopt.errors import ConfigError, DataError, ModelError
from tfopt.training import models, tensorboard
from tfopt.training import train as train_lib

log = logging.getLogger(__name__)

ALGORITHMS = ("random", "hyperband", "bayesian")
# Metrics every trial logs (compiled with metrics=["accuracy"]) and their direction.
OBJECTIVES = {"val_accuracy": "max", "val_loss": "min", "accuracy": "max", "loss": "min"}
SAMPLINGS = ("linear", "log", "reverse_log")
PROJECT_NAME = "search"
STATE_FILE = "tune_config.json"
BEST_FILE = "best_hyperparameters.json"
TRIALS_FILE = "trials.json"
REPORT_FILE = "trials.md"

# Searchable hyperparameters: kind and allowed values / bounds (low, high, low_open, high_open).
PARAMETERS: dict[str, tuple] = {
    "arch": ("str", models.ARCHITECTURES),
    "optimizer": ("str", train_lib.OPTIMIZERS),
    "depth": ("int", (1, 16, False, False)),
    "width": ("int", (1, 8192, False, False)),
    "batch_size": ("int", (1, 1 << 20, False, False)),
    "learning_rate": ("float", (0.0, 10.0, True, False)),
    "dropout": ("float", (0.0, 1.0, False, True)),
}
_MODEL_KEYS = ("arch", "width", "depth", "dropout")
_TRAIN_KEYS = ("optimizer", "learning_rate", "batch_size")

DEFAULT_SEARCH_SPACE = {
    "arch": ["cnn", "mlp"],
    "depth": {"min": 1, "max": 3},
    "width": [16, 32, 64],
    "learning_rate": {"min": 1e-4, "max": 1e-2, "sampling": "log"},
    "dropout": {"min": 0.0, "max": 0.5, "step": 0.1},
    "batch_size": [32, 64, 128],
}


def _space_error(name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"search_space[{name!r}]={value!r} is not allowed: expected {allowed}")


def _check_value(name: str, value: Any) -> Any:
    """One value of hyperparameter ``name`` checked against its bounds; returns it typed."""
    kind, spec = PARAMETERS[name]
    if kind == "str":
        if value not in spec:
            raise _space_error(name, value, "values among " + ", ".join(map(repr, spec)))
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _space_error(name, value, f"{'integers' if kind == 'int' else 'numbers'}")
    if kind == "int" and not float(value).is_integer():
        raise _space_error(name, value, "integers")
    low, high, low_open, high_open = spec
    if (
        not math.isfinite(value)
        or (value <= low if low_open else value < low)
        or (value >= high if high_open else value > high)
    ):
        raise _space_error(
            name,
            value,
            f"values in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}",
        )
    return int(value) if kind == "int" else float(value)


@dataclass(frozen=True)
class Dimension:
    """One searched hyperparameter.

    Attributes:
        name: a key of :data:`PARAMETERS`.
        kind: ``choice`` (one of ``values``), ``int`` / ``float`` (a range
            ``low..high`` with optional ``step`` and ``sampling``) or ``fixed``.
    """

    name: str
    kind: str
    values: tuple = ()
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    sampling: str = "linear"

    @classmethod
    def parse(cls, name: str, spec: Any) -> Dimension:
        if name not in PARAMETERS:
            raise ConfigError(
                f"search_space: unknown hyperparameter {name!r}; allowed: {', '.join(PARAMETERS)}"
            )
        kind = PARAMETERS[name][0]
        if isinstance(spec, list | tuple):
            if not spec:
                raise _space_error(name, spec, "a non-empty list of values")
            values = tuple(_check_value(name, v) for v in spec)
            if len(set(values)) != len(values):
                raise _space_error(name, spec, "a list without repeated values")
            return cls(name, "choice" if len(values) > 1 else "fixed", values)
        if isinstance(spec, dict):
            if kind == "str":
                raise _space_error(name, spec, "a list of values (it is categorical)")
            unknown = sorted(set(spec) - {"min", "max", "step", "sampling"})
            if unknown or "min" not in spec or "max" not in spec:
                raise _space_error(name, spec, "a range {'min', 'max'[, 'step'][, 'sampling']}")
            low, high = _check_value(name, spec["min"]), _check_value(name, spec["max"])
            if high < low:
                raise _space_error(name, spec, "min <= max")
            sampling = spec.get("sampling", "linear")
            check_choice(f"search_space[{name!r}]", "sampling", sampling, SAMPLINGS)
            if sampling != "linear" and low <= 0:
                raise _space_error(name, spec, f"min > 0 with sampling {sampling!r}")
            step = spec.get("step")
            if step is not None:
                if (
                    isinstance(step, bool)
                    or not isinstance(step, int | float)
                    or not step > 0
                    or (kind == "int" and not float(step).is_integer())
                ):
                    raise _space_error(
                        name, spec, "a positive step" + (" (an integer)" if kind == "int" else "")
                    )
                step = int(step) if kind == "int" else float(step)
            if low == high:
                return cls(name, "fixed", (low,))
            return cls(name, kind, (), low, high, step, sampling)
        return cls(name, "fixed", (_check_value(name, spec),))

    def declare(self, hp) -> None:
        """Register this dimension on keras-tuner ``HyperParameters``."""
        if self.kind == "fixed":
            hp.Fixed(self.name, self.values[0])
        elif self.kind == "choice":
            hp.Choice(self.name, list(self.values), ordered=PARAMETERS[self.name][0] != "str")
        elif self.kind == "int":
            hp.Int(self.name, self.low, self.high, step=self.step, sampling=self.sampling)
        else:
            hp.Float(self.name, self.low, self.high, step=self.step, sampling=self.sampling)

    def to_spec(self) -> Any:
        """The params-file form of this dimension."""
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "choice":
            return list(self.values)
        spec = {"min": self.low, "max": self.high}
        if self.step is not None:
            spec["step"] = self.step
        if self.sampling != "linear":
            spec["sampling"] = self.sampling
        return spec


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space (see :data:`DEFAULT_SEARCH_SPACE` for the params-file form)."""

    dimensions: tuple[Dimension, ...]

    @classmethod
    def from_dict(cls, space: dict) -> SearchSpace:
        if not isinstance(space, dict):
            raise ConfigError(
                f"search_space={space!r} is not allowed: expected a mapping "
                "from hyperparameter name to a list of values or a range"
            )
        if not space:
            raise ConfigError(
                "search_space={} is not allowed: the search space is empty; give "
                f"at least one of {', '.join(PARAMETERS)}"
            )
        dims = tuple(Dimension.parse(name, spec) for name, spec in space.items())
        if all(d.kind == "fixed" for d in dims):
            raise ConfigError(
                f"search_space={space!r} is not allowed: every hyperparameter "
                "has a single value, there is nothing to search"
            )
        return cls(dims)

    def to_dict(self) -> dict:
        return {d.name: d.to_spec() for d in self.dimensions}

    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def hyperparameters(self):
        """keras-tuner ``HyperParameters`` declaring every dimension."""
        import keras_tuner

        hp = keras_tuner.HyperParameters()
        for dim in self.dimensions:
            dim.declare(hp)
        return hp

    def values_of(self, dim_name: str) -> tuple:
        """Values a categorical or fixed dimension can take (empty for ranges / absent)."""
        for dim in self.dimensions:
            if dim.name == dim_name:
                return dim.values
        return ()


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
    max_trials: int = 10
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
        """What a resumed search must share with the one that made the directory."""
        return {
            "algorithm": self.algorithm,
            "objective": self.objective,
            "search_space": self.search_space.to_dict(),
            "hyperband_factor": self.hyperband_factor,
            "base": _plain(dataclasses.asdict(self.base)),
        }


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


def train_config_from_hyperparameters(
    best: dict, base: train_lib.TrainConfig
) -> train_lib.TrainConfig:
    """``base`` with the tuned values of ``best`` (as written to ``best_hyperparameters.json``).

    Args:
        best: hyperparameter name -> value; names from :data:`PARAMETERS`.
        base: the train step's own settings, kept for every name ``best`` lacks.
    """
    if not isinstance(best, dict):
        raise ConfigError(f"hyperparameters={best!r} is not allowed: expected a JSON object")
    unknown = sorted(set(best) - set(PARAMETERS))
    if unknown:
        raise ConfigError(
            f"hyperparameters: unknown name(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(PARAMETERS)}"
        )
    typed = {k: _check_value(k, v) for k, v in best.items()}
    model = dataclasses.replace(base.model, **{k: typed[k] for k in _MODEL_KEYS if k in typed})
    return dataclasses.replace(
        base, model=model, **{k: typed[k] for k in _TRAIN_KEYS if k in typed}
    )


def load_hyperparameters(path: str) -> dict:
    """Read a ``best_hyperparameters.json`` file (checked by the same rules)."""
    if not fsutil.exists(path):
        raise DataError(f"{path}: no such hyperparameters file")
    best = fsutil.read_json(path)
    train_config_from_hyperparameters(best, train_lib.TrainConfig())
    return best


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


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


def _make_oracle(config: TuneConfig):
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


def _tuner_class():
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
        if previous != _plain(identity):
            changed = sorted(k for k in identity if _plain(identity[k]) != previous.get(k))
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
    tuner = _tuner_class()(
        _make_oracle(config),
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
