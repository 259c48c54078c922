"""A setting: one field of a frozen config dataclass, declared once with everything about it.

A technique's config (``PruneConfig`` ...) declares each setting with :func:`setting`:
its default, its allowed range or choices, its description and the pipeline parameter
that feeds it. From that one declaration come the config's own checks
(:func:`check_settings` in ``__post_init__``), the KFP component's typed inputs and
their descriptions, the pipeline's parameters, ``tfopt params`` and the docs table.

Root module: no TensorFlow, no kfp.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tfopt.checks import check_choice, check_float, check_int, check_str
from tfopt.errors import ConfigError

_KEY = "tfopt.setting"
_TYPES = (bool, int, float, str)


@dataclass(frozen=True)
class Setting:
    """What :func:`setting` declared, with the field's name and type filled in.

    Attributes:
        name: the config field (and the component input) name.
        default: its default (bool, int, float or str: what KFP parameters take).
        description: what it means, its unit; shown in the console's run form.
        low / high / low_open / high_open: the allowed range of a number (None = unbounded).
        choices: the allowed values of a string, or ().
        param: the pipeline parameter that feeds it ("" = none: the component's default
            is used in the pipeline; a user setting the component directly can change it).
        empty: a string setting may be "".
        search: for the technique's strength knob, the range searched (issue 32), from its
            weak end to its strong end: ``(0.5, 0.95)`` for a sparsity, ``(64, 4)`` for a
            cluster count; () for every other setting.
    """

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    param: str = ""
    empty: bool = True
    search: tuple = ()

    @property
    def type(self) -> type:
        return type(self.default)

    def check(self, owner: str, value: Any) -> None:
        """Raise ``ConfigError`` naming ``owner.name``, the value and what is allowed."""
        if self.choices:
            check_choice(owner, self.name, value, self.choices)
        elif self.type is bool:
            check_choice(owner, self.name, value, (True, False))
        elif self.type is int:
            low, high = self.low, self.high
            check_int(owner, self.name, value, None if low is None else int(low),
                      None if high is None else int(high))  # fmt: skip
        elif self.type is float:
            check_float(owner, self.name, value, self.low, self.high, self.low_open, self.high_open)
        elif self.type is str:
            check_str(owner, self.name, value, allow_empty=self.empty)

    def allowed(self) -> str:
        """The allowed values in words (``tfopt params``, the docs table)."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.type is bool:
            return "true or false"
        if self.type in (int, float):
            if self.low is None and self.high is None:
                return "any number"
            lo = "(" if self.low_open else "["
            hi = ")" if self.high_open else "]"
            return f"{lo}{self.low}, {self.high}{hi}".replace("None", "")
        return "any text" if self.empty else "a non-empty text"


def setting(
    default: Any,
    description: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: Sequence = (),
    param: str = "",
    empty: bool = True,
    search: tuple = (),
) -> Any:
    """A dataclass field declared as a setting (see :class:`Setting`)."""
    if type(default) not in _TYPES:
        raise ConfigError(f"setting default {default!r}: expected one of bool, int, float, str")
    info = Setting("", default, description, low, high, low_open, high_open, tuple(choices),
                   param, empty, tuple(search))  # fmt: skip
    return dataclasses.field(default=default, metadata={_KEY: info})


def settings_of(config: type | object) -> tuple[Setting, ...]:
    """The settings a config class declares, named: its own in field order, then inherited."""
    cls = config if isinstance(config, type) else type(config)
    own = set(inspect.get_annotations(cls))
    found = [
        dataclasses.replace(f.metadata[_KEY], name=f.name)
        for f in dataclasses.fields(cls)
        if _KEY in f.metadata
    ]
    # the class's own settings first, then those it inherits (shared ones, e.g. search's)
    return tuple(sorted(found, key=lambda s: s.name not in own))


def check_settings(config: object) -> None:
    """Check every declared setting of ``config`` (call from ``__post_init__``)."""
    owner = type(config).__name__
    for s in settings_of(config):
        s.check(owner, getattr(config, s.name))


def build(config_cls: type, values: dict[str, Any]):
    """``config_cls(**values)``, refusing names that are not settings of it, by name."""
    known = {s.name for s in settings_of(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"{config_cls.__name__}: unknown setting(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(known))}"
        )
    return config_cls(**values)
