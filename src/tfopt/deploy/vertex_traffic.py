"""Vertex AI traffic splits: validation, the canary split, and the smoke-test budget.

Pure functions (no API calls), so every split :mod:`tfopt.deploy.vertex` sends
is checked here first: integer percentages summing to 100, only deployed-model
ids the endpoint knows.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from tfopt.checks import check_int
from tfopt.errors import ConfigError

NEW_DEPLOYED_MODEL = "0"  # the id Vertex uses for "the model deployed by this request"


def validate_traffic_split(
    split: Mapping[str, int], deployed_ids: Collection[str], where: str = "traffic split"
) -> dict[str, int]:
    """Return ``split`` as a dict after checking it can be sent to Vertex AI.

    Percentages are integers in [0, 100] that sum to 100, and every key is a
    deployed-model id in ``deployed_ids``. An empty split is allowed only when
    nothing is deployed.
    """
    if not isinstance(split, Mapping):
        raise ConfigError(f"{where}={split!r}: expected a mapping of deployed-model id to percent")
    known = {str(i) for i in deployed_ids}
    out: dict[str, int] = {}
    for key, pct in split.items():
        if str(key) not in known:
            raise ConfigError(
                f"{where}: deployed-model id {key!r} is not deployed on the "
                f"endpoint; known ids: {', '.join(sorted(known)) or '(none)'}"
            )
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            raise ConfigError(f"{where}[{key!r}]={pct!r}: expected an integer percent in [0, 100]")
        out[str(key)] = pct
    total = sum(out.values())
    if not out and not known:
        return out
    if total != 100:
        raise ConfigError(f"{where}={out!r} sums to {total}: expected 100")
    return out


def canary_split(
    current: Mapping[str, int], canary_percent: int, new_id: str = NEW_DEPLOYED_MODEL
) -> dict[str, int]:
    """Traffic split giving ``new_id`` ``canary_percent``; others keep their proportions.

    With nothing serving yet, the new model gets 100% (there is nothing to
    compare against). Shares are rounded by largest remainder so they sum to 100.
    """
    check_int("canary_split", "canary_percent", canary_percent, 1, 100)
    live = {k: v for k, v in current.items() if v > 0}
    if not live or canary_percent == 100:
        return {new_id: 100}
    out = scaled_split(live, 100 - canary_percent)
    out[new_id] = canary_percent
    return out


def scaled_split(shares: Mapping[str, int], to: int) -> dict[str, int]:
    """Positive ``shares`` scaled to sum to ``to``, by largest remainder; zeros dropped."""
    total = sum(shares.values())
    exact = {k: v * to / total for k, v in shares.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    short = to - sum(out.values())
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[:short]:
        out[k] += 1
    return {k: v for k, v in out.items() if v > 0}


def smoke_requests_needed(
    canary_percent: int, miss_probability: float = 1e-3, cap: int = 1000
) -> int:
    """Predictions to send so a healthy canary answers at least once (1 - miss_probability)."""
    if canary_percent >= 100:
        return 1
    p = canary_percent / 100
    return min(cap, max(1, math.ceil(math.log(miss_probability) / math.log(1 - p))))
