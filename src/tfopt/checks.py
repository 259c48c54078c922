"""Validation helpers for the frozen config dataclasses.

Each module owns its config dataclass (``TrainConfig`` in ``training/train.py``,
``IngestConfig`` in ``data/ingest.py`` ...); they call these helpers from
``__post_init__`` so every bad value fails with the field, the value and
what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import socket
from collections.abc import Collection
from typing import Any

from tfopt.errors import CloudError, ConfigError


def _fail(owner: str, field: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{owner}.{field}={value!r} is not allowed: expected {allowed}")


def check_choice(owner: str, field: str, value: Any, choices: Collection[Any]) -> None:
    if value not in choices:
        _fail(owner, field, value, "one of " + ", ".join(repr(c) for c in choices))


def check_int(
    owner: str, field: str, value: Any, low: int | None = None, high: int | None = None
) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(owner, field, value, "an integer")
    if (low is not None and value < low) or (high is not None and value > high):
        _fail(owner, field, value, f"an integer in [{low}, {high}]")


def check_float(
    owner: str,
    field: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _fail(owner, field, value, "a finite number")
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        _fail(owner, field, value, f"a number in {lo}{low}, {high}{hi}")


def check_str(owner: str, field: str, value: Any, allow_empty: bool = False) -> None:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        _fail(owner, field, value, "a non-empty string")


def config_from_dict(cls: type, values: dict[str, Any]):
    """Build config ``cls`` from a dict, rejecting unknown keys by name."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{cls.__name__}: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(names))}"
        )
    return cls(**values)


def check_reachable(address: str, what: str, timeout_s: float = 5.0) -> None:
    """Open (and close) a TCP connection to ``host[:port]`` or a URL; fail with a clear error.

    Called before any resource is created so that a wrong or unreachable host
    fails in seconds instead of after the SDKs' retry loops.
    """
    text = address.split("://", 1)[-1].split("/", 1)[0]
    default_port = 80 if address.startswith("http://") else 443
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or host.endswith(":"):  # no port (or bare IPv6)
        host, port = text, str(default_port)
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise CloudError(
            f"cannot reach {what} at {address!r} ({host}:{port}): {exc.strerror or exc}"
        ) from None
