"""The search fan-out's compile settings and their rules, written once: ``tfopt compile``
names them as flags, ``submit`` / ``schedule`` / ``publish`` as params-file keys. No KFP
import: a params file is checked before anything heavy loads."""

from __future__ import annotations

from typing import NamedTuple

from tfopt.errors import ConfigError

SEARCHED = ("optimize",)  # the pipelines with searched variants


class Names(NamedTuple):
    """How the user gave the two settings, and how they turn the fan-out on."""

    fanout: str = "--search-fanout"
    parallelism: str = "--search-parallelism"
    enable: str = "add --search-fanout"


FLAGS = Names()  # tfopt compile's


def check(pipeline: str, fanout: bool, parallelism: int, names: Names = FLAGS) -> None:
    """Refuse a limit below zero, a limit without the fan-out, a fan-out of a pipeline with
    no search."""
    if parallelism < 0:
        raise ConfigError(
            f"{names.parallelism}={parallelism} is not allowed: expected an integer >= 0 "
            "(0 = no limit)"
        )
    if parallelism and not fanout:
        raise ConfigError(f"{names.parallelism} limits the search fan-out: {names.enable}")
    if fanout and pipeline not in SEARCHED:
        raise ConfigError(
            f"{names.fanout}: pipeline {pipeline!r} has no search; only {', '.join(SEARCHED)}"
        )
