"""Named parameter sets (``preset: NAME`` in a params file, or ``--set preset=NAME``).

A preset fills parameters the user did not give: the params file and ``--set`` win over
it. ``tfopt params --preset NAME`` shows the defaults with it applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tfopt.errors import ConfigError

KEY = "preset"  # the params-file key (and --set name) that names one


@dataclass(frozen=True)
class Preset:
    description: str
    params: dict[str, Any]


PRESETS = {
    # The default run stays fixed-strength (digits: as fast as it was); real data pays for
    # a search, bounded per technique by trials and minutes (compression/search.py).
    "real": Preset(
        "Real data (Fashion-MNIST-sized and up): every technique with a strength knob "
        "(pruning sparsity, structured pruning's FLOPs fraction, the student's width, "
        "low-rank energy, the cluster count) searches it for the strongest setting whose "
        "validation accuracy stays within max_accuracy_drop, at most 4 trials and 10 "
        "minutes per technique; structured pruning is on (the one technique besides "
        "distillation that makes the served SavedModel itself smaller and faster). A "
        "technique that cannot win on the objective is not searched, and a variant that "
        "cannot be picked for deploy_target on the objective is not made "
        "(skip_non_contenders: with TF Serving, the TFLite variants and pruning). A student "
        "stops training when its validation accuracy has not improved for 3 epochs.",
        {
            "search": True,
            "search_trials": 4,
            "search_budget_minutes": 10.0,
            "enable_channel_pruning": True,
            "skip_non_contenders": True,
            "distill_patience": 3,
        },
    ),
}


def get(name: Any, where: str = "params") -> Preset:
    """The preset ``name``, or a ConfigError naming the ones there are."""
    if name not in PRESETS:
        raise ConfigError(f"{where}: {KEY}={name!r}; allowed: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def expand(values: dict[str, Any], where: str = "params") -> dict[str, Any]:
    """``values`` with its ``preset`` key replaced by the preset's parameters, under the
    ones ``values`` gives itself."""
    if KEY not in values:
        return values
    given = dict(values)
    return {**get(given.pop(KEY), where).params, **given}
