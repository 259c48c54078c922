"""Structured pruning to a latency target (issue 31): the keep ratio bisected on the
measured batch-1 p50 through the serving runtime, instead of on FLOPs.

At batch 1 FLOPs fall faster than time (per-op overhead: docs/benchmarks.md, "Structured
pruning on the families"), so a FLOPs fraction says little about what the server will gain.
Each bisection step rebuilds the smaller model at a keep ratio (no training: the
architecture, not the weights, sets the time), saves it as the step saves its output, and
times it through tfopt's own runtime (``Predictor``, the SavedModel) right after the
unpruned model, so that a machine busy with another step slows both alike and the ratio
holds. Six steps take the ratio to 1/64.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tfopt.compression import channels
from tfopt.data import input_pipeline
from tfopt.evaluation.evaluate import EvalConfig, latency_ms
from tfopt.evaluation.runtime import Predictor
from tfopt.training import models

STEPS = 6
NEAR = 0.05  # measured times this close to the fastest are taken as equal (timing noise)
# Enough batch-1 calls for a stable median of a millisecond-scale model, in about 0.2 s
TIMING = EvalConfig(latency_warmup=10, latency_iterations=100, latency_min_seconds=0.2)


@dataclass(frozen=True)
class LatencyChoice:
    """The keep ratio chosen and what was measured."""

    ratio: float  # the largest keep ratio measured within the target, else see ``choose``
    measured: float  # its p50 over the unpruned model's
    reached: bool
    measurements: int

    def describe(self, target: float) -> str:
        how = (
            "reached"
            if self.reached
            else "not reached: the most channels among the fastest measured are kept"
        )
        return (
            f"latency target {target:g}x of the unpruned model's batch-1 p50 {how} (keep "
            f"ratio {self.ratio:.3f}, measured {self.measured:.2f}x, {self.measurements} "
            "models timed)"
        )


def p50(predictor: Predictor, x: np.ndarray) -> float:
    return float(np.median(latency_ms(predictor, x, TIMING)))


def choose(
    model_path: str,
    model,
    groups: channels.Groups,
    keep_at: Callable[[float], dict],
    info,
    target: float,
) -> LatencyChoice:
    """Bisect the keep ratio of ``keep_at`` for the largest whose rebuilt model's p50 is
    within ``target`` times that of the model at ``model_path`` (``model`` flattened).
    When none is (per-op overhead can set a floor above the target), the largest ratio
    measured within ``NEAR`` of the fastest: channels that buy no time are kept."""
    split = "validation" if info.counts.get("validation") else "train"
    x = next(input_pipeline.iter_arrays(info, split, batch_size=16))[0]
    base = Predictor(model_path, "saved_model")
    seen: dict[float, float] = {}
    with tempfile.TemporaryDirectory(prefix="tfopt-latency-") as tmp:

        def ratio_at(keep_ratio: float) -> float:
            path = os.path.join(tmp, f"keep-{len(seen)}")
            smaller = channels.rebuild(model, groups, keep_at(keep_ratio))
            models.save_for_dataset(smaller, path, info)
            candidate = p50(Predictor(path, "saved_model"), x)
            return candidate / p50(base, x)

        low, high = 0.0, 1.0  # low: within the target (the floor at 0), high: not
        for _ in range(STEPS):
            mid = (low + high) / 2
            seen[mid] = ratio_at(mid)
            if seen[mid] <= target:
                low = mid
            else:
                high = mid
        if low not in seen:  # nothing measured was within it: time the floor too
            seen[low] = ratio_at(low)
    if seen[low] <= target:
        return LatencyChoice(low, seen[low], True, len(seen))
    fastest = min(seen.values())
    ratio = max(r for r, t in seen.items() if t <= fastest * (1 + NEAR))
    return LatencyChoice(ratio, seen[ratio], False, len(seen))
