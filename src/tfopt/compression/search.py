"""Search a technique's strength knob within the accuracy budget (issue 32).

Every technique runs once at a fixed strength by default. With ``search`` on, a technique
whose config declares a knob (``setting(..., search=(weak, strong))``: pruning's sparsity,
structured pruning's FLOPs fraction, the student's width, low-rank's energy, the cluster
count) looks for the strongest value whose **validation** accuracy stays within
``max_accuracy_drop`` of its base model, judged on the same examples with McNemar's test
(``evaluation/noise.py``: a drop noise explains is not a drop). The test split is never
read.

Strategy: bisection on the knob, which is monotone (stronger loses more accuracy): the
strong end first (one trial when it already fits), then halves of the interval between
the strongest value that fitted and the weakest that did not. Each trial fine-tunes for a
third of the technique's epochs (at least one); the winner is then made again with the
full fine-tuning, as the variant. ``search_trials`` and ``search_minutes`` bound the
trials; when a bound is reached the search stops and says so. Every trial is recorded
(value, validation accuracy and drop, file size and gzip size, seconds).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time

from tfopt import fsutil, registry
from tfopt.data import input_pipeline, schema
from tfopt.evaluation.noise import paired_drop
from tfopt.evaluation.runtime import Predictor
from tfopt.settings import Setting

log = logging.getLogger(__name__)


def knob(technique: registry.Technique) -> Setting | None:
    """The setting a technique's search moves, or None (it has none)."""
    return next((s for s in technique.settings if s.search), None)


def apply(technique: registry.Technique, model_dir, dataset_dir, output_path, config, tb=None):
    """``technique.apply``, searched when the config asks for it and the technique can."""
    setting = knob(technique)
    if setting is None or not getattr(config, "search", False):
        return technique.apply(model_dir, dataset_dir, output_path, config, tb)
    return _Search(technique, setting, model_dir, dataset_dir, config).run(output_path, tb)


class _Search:
    def __init__(self, technique, setting: Setting, model_dir, dataset_dir, config) -> None:
        self.t, self.s, self.config = technique, setting, config
        self.model_dir, self.dataset_dir = model_dir, dataset_dir
        info = schema.load_info(dataset_dir)
        split = "validation" if info.counts.get("validation") else "train"
        self.split = split
        self.x, self.y = input_pipeline.load_arrays(info, split)
        self.reference = Predictor(model_dir, "saved_model").predict(self.x).argmax(1)
        self.trials: list[dict] = []
        self.start = time.monotonic()
        self.stopped = ""

    def value_at(self, at: float):
        weak, strong = self.s.search
        value = weak + at * (strong - weak)
        return round(value) if self.s.type is int else round(value, 4)

    def trial(self, at: float) -> bool:
        value = self.value_at(at)
        config = dataclasses.replace(
            self.config,
            search=False,
            **{self.s.name: value, "epochs": max(1, self.config.epochs // 3)},
        )
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="tfopt-search-") as tmp:
            path = os.path.join(tmp, "model.tflite" if self.t.output_format == "tflite" else "m")
            self.t.apply(self.model_dir, self.dataset_dir, path, config, None)
            fmt = self.t.output_format
            predicted = Predictor(path, fmt).predict(self.x).argmax(1)
            size, gz = fsutil.size_bytes(path), fsutil.gzip_bytes(path)
        drop = paired_drop(self.y, self.reference, predicted)
        fits = not drop.exceeds(self.config.max_accuracy_drop)
        self.trials.append(
            {
                self.s.name: value,
                f"{self.split}_accuracy": float((predicted == self.y).mean()),
                "drop_points": drop.drop_points,
                "drop": drop.describe(),
                "fits": fits,
                "size_bytes": size,
                "gzip_bytes": gz,
                "seconds": round(time.monotonic() - t0, 1),
            }
        )
        log.info("search %s=%s: %s (%s)", self.s.name, value, drop.describe(), fits)
        return fits

    def budget_left(self) -> bool:
        if len(self.trials) >= self.config.search_trials:
            self.stopped = f"search_trials={self.config.search_trials} reached"
            return False
        spent = (time.monotonic() - self.start) / 60
        if self.config.search_minutes and spent >= self.config.search_minutes:
            self.stopped = f"search_budget_minutes={self.config.search_minutes:g} spent"
            return False
        return True

    def run(self, output_path: str, tb):
        best = 1.0 if self.trial(1.0) else None  # how far toward the strong end fitted
        low, high = 0.0, 1.0  # the weak end is taken to fit, the strong end did not
        while best is None or best < 1.0:
            mid = (low + high) / 2
            resolved = self.value_at(mid) in (self.value_at(low), self.value_at(high))
            if resolved or high - low < 1 / 32 or not self.budget_left():
                break
            if self.trial(mid):
                best, low = mid, mid
            else:
                high = mid
        chosen = self.value_at(best if best is not None else 0.0)
        final = dataclasses.replace(self.config, search=False, **{self.s.name: chosen})
        outcome = self.t.apply(self.model_dir, self.dataset_dir, output_path, final, tb)
        return self._outcome(outcome, chosen, best is not None)

    def _outcome(self, outcome: registry.Outcome, chosen, found: bool) -> registry.Outcome:
        notes = list(outcome.notes)
        notes.append(
            f"search over {self.s.name} {self.s.search[0]} -> {self.s.search[1]} on the "
            f"{self.split} split: {len(self.trials)} trial(s), chose {chosen}"
            + ("" if found else " (the weak end: no trial fitted the budget)")
            + (f"; stopped: {self.stopped}" if self.stopped else "")
        )
        record = {
            "knob": self.s.name,
            "chosen": chosen,
            "max_accuracy_drop": self.config.max_accuracy_drop,  # the budget it judged by
            "trials": self.trials,
        }
        return registry.Outcome(
            metrics={**outcome.metrics, "search_trials": len(self.trials), "search_chosen": chosen},
            model={**outcome.model, "search": record},
            notes=notes,
        )
