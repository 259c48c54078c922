"""The hyperparameter search space: what can be searched, within which bounds.

:data:`PARAMETERS` names every searchable hyperparameter with its kind and
bounds; a :class:`SearchSpace` (parsed from the params-file form, see
:data:`DEFAULT_SEARCH_SPACE`) is a tuple of :class:`Dimension` and declares
itself on keras-tuner ``HyperParameters``; :func:`train_config_from_hyperparameters`
applies a point of the space (a search's best) to a ``TrainConfig``. The search
itself is in :mod:`tfopt.training.tune`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from tfopt import fsutil
from tfopt.checks import check_choice
from tfopt.errors import ConfigError, DataError
from tfopt.training import train as train_lib
from tfopt.training.model_config import ARCHITECTURES

SAMPLINGS = ("linear", "log", "reverse_log")

# Searchable hyperparameters: kind and allowed values / bounds (low, high, low_open, high_open).
PARAMETERS: dict[str, tuple] = {
    "arch": ("str", ARCHITECTURES),
    "optimizer": ("str", train_lib.OPTIMIZERS),
    "depth": ("int", (1, 16, False, False)),
    "width": ("int", (1, 8192, False, False)),
    "batch_size": ("int", (1, 1 << 20, False, False)),
    "learning_rate": ("float", (0.0, 10.0, True, False)),
    "dropout": ("float", (0.0, 1.0, False, True)),
}
# Which level of TrainConfig a tuned name sets (model fields vs. training fields).
MODEL_KEYS = ("arch", "width", "depth", "dropout")
TRAIN_KEYS = ("optimizer", "learning_rate", "batch_size")

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


def check_value(name: str, value: Any) -> Any:
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
            values = tuple(check_value(name, v) for v in spec)
            if len(set(values)) != len(values):
                raise _space_error(name, spec, "a list without repeated values")
            return cls(name, "choice" if len(values) > 1 else "fixed", values)
        if isinstance(spec, dict):
            if kind == "str":
                raise _space_error(name, spec, "a list of values (it is categorical)")
            unknown = sorted(set(spec) - {"min", "max", "step", "sampling"})
            if unknown or "min" not in spec or "max" not in spec:
                raise _space_error(name, spec, "a range {'min', 'max'[, 'step'][, 'sampling']}")
            low, high = check_value(name, spec["min"]), check_value(name, spec["max"])
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
        return cls(name, "fixed", (check_value(name, spec),))

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
        spec: dict[str, Any] = {"min": self.low, "max": self.high}
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
    typed = {k: check_value(k, v) for k, v in best.items()}
    model = dataclasses.replace(base.model, **{k: typed[k] for k in MODEL_KEYS if k in typed})
    return dataclasses.replace(base, model=model, **{k: typed[k] for k in TRAIN_KEYS if k in typed})


def load_hyperparameters(path: str) -> dict:
    """Read a ``best_hyperparameters.json`` file (checked by the same rules)."""
    if not fsutil.exists(path):
        raise DataError(f"{path}: no such hyperparameters file")
    best = fsutil.read_json(path)
    train_config_from_hyperparameters(best, train_lib.TrainConfig())
    return best
