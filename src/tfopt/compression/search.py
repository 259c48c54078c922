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
full fine-tuning, as the variant. A technique that can train on from a model it made
(``Technique.resumes``: distillation's student) continues its winning trial's model for the
epochs the trial did not train instead of starting over. ``search_trials`` and
``search_minutes`` bound the trials; when a bound is reached the search stops and says so.
Every trial is recorded (value, validation accuracy and drop, file size and gzip size,
seconds).

On a cluster the trials can fan out instead (``tfopt compile --search-fanout``,
``pipelines/search_fanout.py``): :func:`grid` gives the values, each runs as
:func:`fanout_trial` in a ``dsl.ParallelFor`` iteration, and :func:`pick` applies the same
rule as the bisection (:func:`strongest_fit`) and writes the same record.
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
    reason = cut(technique, config)
    if reason:
        outcome = technique.apply(model_dir, dataset_dir, output_path, config, tb)
        return with_cut(outcome, setting, cut_record(setting, config, reason))
    return _Search(technique, setting, model_dir, dataset_dir, config).run(output_path, tb)


def cut(technique: registry.Technique, config) -> str:
    """Why no trial of ``technique`` can beat its base on the selection's objective (its
    search is then cut before any trial), or "" when one can."""
    setting = knob(technique)
    assert setting is not None, f"{technique.name} has no knob to search"
    if config.fixed:
        return config.fixed
    if config.objective == "most_accurate":
        return (
            f"objective most_accurate: a stronger {setting.name} costs accuracy, so no trial "
            "can be more accurate than the configured setting"
        )
    if config.objective not in technique.improves:
        return f"objective {config.objective}: {technique.limits}"
    return ""


def cut_record(setting: Setting, config, reason: str) -> dict:
    """The ``search`` record of a search cut for ``reason``: no trial, the configured value."""
    return {**record(setting, config, [], getattr(config, setting.name)), "cut": reason}


def with_cut(outcome: registry.Outcome, setting: Setting, rec: dict) -> registry.Outcome:
    """``outcome`` (made once, at the configured value) with the record ``rec`` of a cut
    search: no trial ran, no budget was spent."""
    return registry.Outcome(
        metrics={**outcome.metrics, "search_trials": 0, "search_chosen": rec["chosen"]},
        model={**outcome.model, "search": rec},
        notes=[*outcome.notes, f"search over {setting.name} cut before any trial: {rec['cut']}"],
    )


def value_at(setting: Setting, at: float):
    """The knob's value ``at`` of the way from its weak end (0) to its strong end (1)."""
    weak, strong = setting.search
    value = weak + at * (strong - weak)
    return round(value) if setting.type is int else round(value, 4)


def grid(setting: Setting, trials: int) -> list:
    """The fan-out's trial values: ``trials`` evenly spaced steps from the weak end, the
    strong end last. The weak end is taken to fit, as the bisection takes it, so a step
    that rounds to it is not tried, nor a value that rounding repeats."""
    values = [value_at(setting, i / trials) for i in range(1, trials + 1)]
    return [v for v in dict.fromkeys(values) if v != value_at(setting, 0.0)]


def strength(setting: Setting, value) -> float:
    """Where ``value`` lies from the knob's weak end (0) to its strong end (1)."""
    weak, strong = setting.search
    return (value - weak) / (strong - weak)


def strongest_fit(setting: Setting, trials: list[dict]):
    """(chosen, found): the value nearest the strong end among the trials that fitted the
    budget, or the weak end (found False) when none did. The bisection and the fan-out
    both choose by this rule."""
    fitted = [t[setting.name] for t in trials if t["fits"]]
    if not fitted:
        return value_at(setting, 0.0), False
    return max(fitted, key=lambda v: strength(setting, v)), True


class Validation:
    """The split a search judges on (validation, or train when there is none; never the
    test split) and the base model's predictions on it."""

    def __init__(self, model_dir, dataset_dir) -> None:
        info = schema.load_info(dataset_dir)
        self.split = "validation" if info.counts.get("validation") else "train"
        self.x, self.y = input_pipeline.load_arrays(info, self.split)
        self.reference = Predictor(model_dir, "saved_model").predict(self.x).argmax(1)


def trial_epochs(config) -> int:
    """A trial's fine-tuning epochs: a third of the technique's (at least one)."""
    return max(1, config.epochs // 3)


def trial(technique, setting: Setting, model_dir, dataset_dir, config, value, judge, keep=""):
    """One trial: ``technique`` with the knob at ``value`` and :func:`trial_epochs`, judged
    by ``judge`` (a :class:`Validation`) against the base model on the same examples;
    returns its record. ``keep``: where its model stays (else it is deleted)."""
    config = dataclasses.replace(
        config, search=False, trial=True, **{setting.name: value, "epochs": trial_epochs(config)}
    )
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tfopt-search-") as tmp:
        fmt = technique.output_format
        path = keep or os.path.join(tmp, "model.tflite" if fmt == "tflite" else "m")
        technique.apply(model_dir, dataset_dir, path, config, None)
        predicted = Predictor(path, fmt).predict(judge.x).argmax(1)
        size, gz = fsutil.size_bytes(path), fsutil.gzip_bytes(path)
    drop = paired_drop(judge.y, judge.reference, predicted)
    fits = not drop.exceeds(config.max_accuracy_drop)
    log.info("search %s=%s: %s (%s)", setting.name, value, drop.describe(), fits)
    return {
        setting.name: value,
        f"{judge.split}_accuracy": float((predicted == judge.y).mean()),
        "drop_points": drop.drop_points,
        "drop": drop.describe(),
        "fits": fits,
        "size_bytes": size,
        "gzip_bytes": gz,
        "seconds": round(time.monotonic() - t0, 1),
    }


def fanout_trial(technique, model_dir, dataset_dir, config, value) -> dict:
    """One trial of a fanned-out search (a ``dsl.ParallelFor`` iteration), as
    :func:`trial` records it; ``value`` is typed as the knob is."""
    setting = knob(technique)
    assert setting is not None, f"{technique.name} has no knob to search"
    value = round(value) if setting.type is int else float(value)  # KFP passes floats
    judge = Validation(model_dir, dataset_dir)
    return trial(technique, setting, model_dir, dataset_dir, config, value, judge)


def record(setting: Setting, config, trials: list[dict], chosen) -> dict:
    """The ``search`` record a searched variant's model carries (the reports show it)."""
    return {
        "knob": setting.name,
        "chosen": chosen,
        "max_accuracy_drop": config.max_accuracy_drop,  # the budget it judged by
        "trials": trials,
    }


def pick(technique, config, trials: list[dict]) -> dict:
    """The record of a fanned-out search: its trials (in value order) and the value
    :func:`strongest_fit` chooses."""
    setting = knob(technique)
    assert setting is not None, f"{technique.name} has no knob to search"
    trials = sorted(trials, key=lambda t: strength(setting, t[setting.name]))
    chosen, _ = strongest_fit(setting, trials)
    return record(setting, config, trials, chosen)


def searched(outcome: registry.Outcome, setting: Setting, rec: dict, how="", stopped="", final=""):
    """``outcome`` (the chosen value made in full) with the search record ``rec``: its
    metrics, its note (``how`` the trials ran, why they ``stopped``, how the ``final`` was
    made when not anew) and the record on the model."""
    trials = rec["trials"]
    split = next(k for k in trials[0] if k.endswith("_accuracy"))  # a search runs one at least
    found = any(t["fits"] for t in trials)
    note = (
        f"search over {setting.name} {setting.search[0]} -> {setting.search[1]} on the "
        f"{split.removesuffix('_accuracy')} split: {len(trials)} trial(s){how}, "
        f"chose {rec['chosen']}"
        + ("" if found else " (the weak end: no trial fitted the budget)")
        + (f"; stopped: {stopped}" if stopped else "")
        + (f"; {final}" if final else "")
    )
    metrics = {"search_trials": len(trials), "search_chosen": rec["chosen"]}
    return registry.Outcome(
        metrics={**outcome.metrics, **metrics},
        model={**outcome.model, "search": rec},
        notes=[*outcome.notes, note],
    )


class _Search:
    """The bisection (see the module docstring): trials one after another, in one step."""

    def __init__(self, technique, setting: Setting, model_dir, dataset_dir, config) -> None:
        self.t, self.s, self.config = technique, setting, config
        self.model_dir, self.dataset_dir = model_dir, dataset_dir
        self.judge = Validation(model_dir, dataset_dir)
        self.trials: list[dict] = []
        self.start = time.monotonic()
        self.stopped = ""
        self.kept = ""  # where the trials' models stay, for a technique that resumes

    def trial(self, at: float) -> bool:
        value = value_at(self.s, at)
        keep = os.path.join(self.kept, f"trial-{len(self.trials)}") if self.kept else ""
        args = (self.model_dir, self.dataset_dir, self.config, value, self.judge, keep)
        self.trials.append(trial(self.t, self.s, *args))
        return self.trials[-1]["fits"]

    def budget_left(self) -> bool:
        if len(self.trials) >= self.config.search_trials:
            self.stopped = f"search_trials={self.config.search_trials} reached"
            return False
        spent = (time.monotonic() - self.start) / 60
        if self.config.search_minutes and spent >= self.config.search_minutes:
            self.stopped = f"search_budget_minutes={self.config.search_minutes:g} spent"
            return False
        return True

    def bisect(self) -> None:
        low, high = 0.0, 1.0  # the weak end is taken to fit
        if self.trial(1.0):  # the strong end first: one trial when it already fits
            low = high
        while low < high:  # the strongest that fitted, the weakest that did not
            mid = (low + high) / 2
            resolved = value_at(self.s, mid) in (value_at(self.s, low), value_at(self.s, high))
            if resolved or high - low < 1 / 32 or not self.budget_left():
                break
            if self.trial(mid):
                low = mid
            else:
                high = mid

    def final(self, chosen, found: bool):
        """The chosen value's config in full and how it is made (the note's words): from its
        trial's model for the remaining epochs where the technique resumes and a trial made
        it, else anew ("")."""
        final = dataclasses.replace(self.config, search=False, **{self.s.name: chosen})
        left = final.epochs - trial_epochs(final)
        if not (self.kept and found and left > 0):
            return final, ""
        index = next(i for i, t in enumerate(self.trials) if t[self.s.name] == chosen)
        start = os.path.join(self.kept, f"trial-{index}")
        final = dataclasses.replace(final, epochs=left, **{self.t.resumes: start})
        done = trial_epochs(self.config)
        return final, f"the final trained on from its trial's model ({done} + {left} epochs)"

    def run(self, output_path: str, tb):
        with tempfile.TemporaryDirectory(prefix="tfopt-search-trials-") as kept:
            self.kept = kept if self.t.resumes else ""
            self.bisect()
            chosen, found = strongest_fit(self.s, self.trials)
            final, how = self.final(chosen, found)
            outcome = self.t.apply(self.model_dir, self.dataset_dir, output_path, final, tb)
        rec = record(self.s, self.config, self.trials, chosen)
        return searched(outcome, self.s, rec, stopped=self.stopped, final=how)
