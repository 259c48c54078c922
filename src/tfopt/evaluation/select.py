"""Selection policy: which candidate meets the targets, and why the others do not.

A candidate is acceptable when it evaluated without error, loses at most
``max_accuracy_drop`` points against the baseline, fits ``max_size_bytes`` and
``max_latency_ms_p99``, and (when a previously blessed model's evaluation is
given) changes accuracy by at least ``min_accuracy_change`` points against it,
as TFX's Evaluator does with a change threshold. Among acceptable candidates
the objective picks one; ``blessed`` is true exactly when one was picked.

Besides these change thresholds there is a quality floor (TFX's value
thresholds): a candidate must clearly beat the majority-class predictor on the
test split (see :func:`quality_floor`) and meet the optional ``min_accuracy`` /
``min_f1``. When the baseline itself fails the floor nothing is blessed: every
candidate derives from it, so passing a relative gate against it means nothing.

Over 400 lines on purpose: the selection policy, the quality floor and the gate's verdict
read one record format and are checked together; splitting them would spread one rule set.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, field

from tfopt import fsutil, registry
from tfopt.checks import check_choice, check_float, check_int, check_str
from tfopt.errors import ConfigError
from tfopt.evaluation import noise
from tfopt.evaluation.champion import CHANGE_MODES, change_reasons, load_previous
from tfopt.reporting.summary import build_summary

log = logging.getLogger(__name__)

OBJECTIVES = registry.SELECTION_OBJECTIVES
# Standard errors above the majority rate a candidate must reach: a model with
# no skill (expected accuracy = the majority rate p0) passes with probability
# about 0.13% (one-sided normal tail at 3 sigma of Binomial(n, p0) / n).
MAJORITY_MARGIN_SE = 3.0


@dataclass(frozen=True)
class SelectionPolicy:
    """Targets a candidate must meet, and how to choose among those that do.

    Attributes:
        max_accuracy_drop: accuracy points a candidate may lose against the baseline.
        max_size_bytes: largest allowed file size (0 = no limit).
        max_latency_ms_p99: largest allowed batch-1 p99 latency (0 = no limit).
        objective: ``smallest`` (size), ``fastest`` (p50 latency) or ``most_accurate``.
        previous: path of a previously blessed model's ``summary.json`` (or an
            evaluation JSON / record) to compare with; empty = no comparison. The weaker
            check: its accuracy was measured on that run's test split.
        min_accuracy_change: accuracy a candidate must gain over the champion (the model
            the deploy target serves, evaluated on this run's test split) and over the
            ``previous`` run's pick, in points (negative = the regression allowed), or in
            percent of their accuracy with ``change_mode`` relative.
        change_mode: how ``min_accuracy_change`` counts: ``absolute`` (accuracy points) or
            ``relative`` (percent of the reference's accuracy), as TFX's change thresholds.
        deploy_target: where the pick goes, which decides the formats it may have:
            ``tf_serving`` / ``vertex`` serve SavedModels, ``tflite`` (edge) takes
            ``.tflite`` files, ``none`` accepts any format.
        min_accuracy: hard floor on test accuracy, a fraction in [0, 1] (0 = none).
        min_f1: hard floor on macro F1 on the test split, in [0, 1] (0 = none).
    """

    max_accuracy_drop: float = 1.0
    max_size_bytes: int = 0
    max_latency_ms_p99: float = 0.0
    objective: str = "smallest"
    previous: str = ""
    min_accuracy_change: float = 0.0
    change_mode: str = "absolute"
    deploy_target: str = "none"
    min_accuracy: float = 0.0
    min_f1: float = 0.0

    def __post_init__(self):
        check_float("SelectionPolicy", "max_accuracy_drop", self.max_accuracy_drop, 0.0, 100.0)
        check_int("SelectionPolicy", "max_size_bytes", self.max_size_bytes, 0)
        check_float("SelectionPolicy", "max_latency_ms_p99", self.max_latency_ms_p99, 0.0)
        check_choice("SelectionPolicy", "objective", self.objective, OBJECTIVES)
        check_str("SelectionPolicy", "previous", self.previous, allow_empty=True)
        check_float(
            "SelectionPolicy", "min_accuracy_change", self.min_accuracy_change, -100.0, 100.0
        )
        check_choice("SelectionPolicy", "change_mode", self.change_mode, CHANGE_MODES)
        check_choice(
            "SelectionPolicy", "deploy_target", self.deploy_target, registry.DEPLOY_TARGETS
        )
        check_float("SelectionPolicy", "min_accuracy", self.min_accuracy, 0.0, 1.0)
        check_float("SelectionPolicy", "min_f1", self.min_f1, 0.0, 1.0)

    @property
    def formats(self) -> tuple[str, ...]:
        """Candidate formats the deploy target can take (empty = any)."""
        return registry.DEPLOY_TARGET_FORMATS[self.deploy_target]


@dataclass
class Selection:
    """The outcome: records with ``rejected_reasons``, the pick and why."""

    records: list[dict]
    selected: str | None
    blessed: bool
    reasons: dict[str, list[str]] = field(default_factory=dict)
    reason: str = ""
    policy: dict = field(default_factory=dict)
    previous: dict | None = None
    floor: dict | None = None
    champion: dict | None = None  # the deployed model's entry, evaluated or why not
    noise: dict | None = None  # noise_check's verdict on the test split's size


def rejection_reasons(
    record: dict,
    base: dict | None,
    policy: SelectionPolicy,
    previous: dict | None = None,
    champion: dict | None = None,
) -> list[str]:
    """Every target ``record`` misses (empty when it is acceptable); ``champion``: the
    ``champion`` entry of the evaluations (used when it was evaluated)."""
    if record.get("not_applicable") or record.get("not_made"):
        return [record["error"]]
    if record.get("error"):
        return [f"failed to evaluate: {record['error']}"]
    if base is None:
        return ["baseline failed to evaluate, so the accuracy drop cannot be checked"]
    reasons = []
    if policy.formats and record.get("format") not in policy.formats:
        reasons.append(
            f"format {record.get('format')} cannot be deployed to "
            f"{policy.deploy_target} (takes {', '.join(policy.formats)})"
        )
    drop = (base["accuracy"] - record["accuracy"]) * 100
    if drop > policy.max_accuracy_drop + 1e-9 and not within_noise(record):
        reasons.append(f"accuracy drop {drop:.2f} points > {policy.max_accuracy_drop:g}")
    if policy.max_size_bytes and record["size_bytes"] > policy.max_size_bytes:
        reasons.append(f"size {record['size_bytes']} bytes > {policy.max_size_bytes}")
    if policy.max_latency_ms_p99 and record["latency_ms_p99"] > policy.max_latency_ms_p99:
        reasons.append(
            f"p99 latency {record['latency_ms_p99']:.3f} ms > {policy.max_latency_ms_p99:g} ms"
        )
    return reasons + change_reasons(record, policy, champion, previous)


def within_noise(record: dict) -> bool:
    """Whether the record's drop against the baseline on the same test examples is one
    that chance explains (its ``paired_drop``, McNemar p >= noise.ALPHA): then it is no
    drop. A record without one (evaluated before, or by a library caller) is taken as
    measured."""
    p = (record.get("paired_drop") or {}).get("p_value")
    return p is not None and p >= noise.ALPHA


def noise_check(base: dict | None, policy: SelectionPolicy) -> dict | None:
    """Whether the test split is large enough for ``max_accuracy_drop`` to be told from
    noise, and how many examples it would need (None without a baseline count)."""
    n = (base or {}).get("num_test")
    if not n or policy.max_accuracy_drop <= 0:
        return None
    needed = noise.examples_needed(policy.max_accuracy_drop)
    check = {
        "num_test": n,
        "budget_points": policy.max_accuracy_drop,
        "examples_needed": needed,
        "alpha": noise.ALPHA,
    }
    if n < needed:
        check["warning"] = (
            f"the test split's {n} examples are too few to tell a "
            f"{policy.max_accuracy_drop:g}-point drop from noise (that needs {needed}): drops "
            "within noise pass the gate; use a larger test split or a larger max_accuracy_drop"
        )
    return check


def quality_floor(records: list[dict], baseline: str, policy: SelectionPolicy) -> dict:
    """The value thresholds every candidate must meet, with the numbers behind them.

    The majority-class predictor's accuracy ``p0`` comes from the test split's
    class counts (the rows of an evaluated record's confusion matrix; the
    baseline's when it has one). A candidate must reach ``p0`` plus
    ``MAJORITY_MARGIN_SE`` binomial standard errors ``sqrt(p0 (1 - p0) / n)``,
    and at least one more correct test example than ``p0``. Without any
    confusion matrix the majority part is unknown (``majority_accuracy`` None)
    and only ``min_accuracy`` / ``min_f1`` apply.
    """
    ordered = sorted(records, key=lambda r: r.get("name") != baseline)
    matrix = next((r["confusion_matrix"] for r in ordered if r.get("confusion_matrix")), None)
    floor = {"min_accuracy": policy.min_accuracy, "min_f1": policy.min_f1}
    if matrix is None:
        return dict(floor, majority_accuracy=None, num_test=None, required_accuracy=None)
    support = [sum(row) for row in matrix]
    n = sum(support)
    p0 = max(support) / n if n else 1.0
    margin = max(MAJORITY_MARGIN_SE * math.sqrt(p0 * (1 - p0) / n), 1 / n) if n else 0.0
    return dict(
        floor,
        majority_accuracy=p0,
        majority_class=support.index(max(support)) if n else None,
        num_test=n,
        margin=margin,
        required_accuracy=p0 + margin,
    )


def floor_reasons(record: dict, floor: dict) -> list[str]:
    """Every value threshold of ``floor`` that an evaluated ``record`` misses."""
    if record.get("error") or record.get("not_applicable"):
        return []
    reasons = []
    acc = record["accuracy"]
    required = floor.get("required_accuracy")
    if required is not None and acc < required - 1e-9:
        reasons.append(
            f"accuracy {acc * 100:.2f}% does not clearly beat the majority-class predictor "
            f"({floor['majority_accuracy'] * 100:.2f}% on {floor['num_test']} test examples; "
            f"needs >= {required * 100:.2f}%)"
        )
    if floor["min_accuracy"] and acc < floor["min_accuracy"] - 1e-9:
        reasons.append(f"accuracy {acc * 100:.2f}% < min_accuracy {floor['min_accuracy'] * 100:g}%")
    f1 = record.get("f1")
    if floor["min_f1"] and (f1 is None or f1 < floor["min_f1"] - 1e-9):
        shown = "unknown" if f1 is None else f"{f1:.3f}"
        reasons.append(f"macro F1 {shown} < min_f1 {floor['min_f1']:g}")
    return reasons


_KEYS = {
    "smallest": ("size_bytes", lambda r: (r["size_bytes"], -r["accuracy"])),
    "fastest": ("latency_ms_p50", lambda r: (r["latency_ms_p50"], -r["accuracy"])),
    "most_accurate": ("accuracy", lambda r: (-r["accuracy"], r["size_bytes"])),
}


def select_candidate(
    records: list[dict], baseline: str, policy: SelectionPolicy, champion: dict | None = None
) -> Selection:
    """Apply ``policy``; the baseline itself is a candidate like any other. ``champion``
    (the evaluations' ``champion`` entry) is no candidate: each candidate must beat it by
    ``min_accuracy_change`` when it was evaluated.

    Raises:
        ConfigError: no records, or no record named ``baseline``.
    """
    if not records:
        raise ConfigError("no candidate to select from: the evaluation produced no records")
    check_choice("SelectionPolicy", "objective", policy.objective, OBJECTIVES)
    base = next((r for r in records if r["name"] == baseline), None)
    if base is None:
        raise ConfigError(
            f"baseline {baseline!r} is not among the candidates: "
            f"{', '.join(r['name'] for r in records)}"
        )
    if base.get("error"):
        base = None
    previous = load_previous(policy.previous) if policy.previous else None
    floor = quality_floor(records, baseline, policy)
    reasons = {
        r["name"]: rejection_reasons(r, base, policy, previous, champion) + floor_reasons(r, floor)
        for r in records
    }
    base_fails = floor_reasons(base, floor) if base is not None else []
    floor["baseline_passes"] = base is not None and not base_fails
    if base_fails:
        # every candidate derives from the baseline: a gate relative to it means nothing
        why = "the baseline fails the quality floor, so nothing is blessed"
        for name, rs in reasons.items():
            if name != baseline:
                rs.append(why)
    ok = [r for r in records if not reasons[r["name"]]]
    metric, key = _KEYS[policy.objective]
    best = min(ok, key=key) if ok else None
    if base_fails:
        reason = "the baseline fails the quality floor, so nothing is blessed: " + "; ".join(
            base_fails
        )
    elif best is None:
        reason = "no candidate meets the policy"
        if champion and champion.get("evaluated"):
            reason += (
                f"; the champion ({champion.get('accuracy', 0) * 100:.2f}% on this test split) "
                "stays deployed"
            )
    else:
        others = len(ok) - 1
        reason = (
            f"{best['name']} is the {policy.objective.replace('_', ' ')} of "
            f"{len(ok)} acceptable candidate{'s' if len(ok) != 1 else ''} "
            f"({metric} {best[metric]:.6g})" + ("" if others else "; the only one")
        )
    out = [dict(r, rejected_reasons=reasons[r["name"]]) for r in records]
    return Selection(
        out,
        best["name"] if best else None,
        best is not None,
        reasons,
        reason,
        asdict(policy),
        previous,
        floor,
        champion,
        noise_check(base, policy),
    )


# what summary.json keeps of the dataset; class_names: the report and model card show them
SUMMARY_DATASET_KEYS = (
    "name",
    "num_train",
    "num_validation",
    "num_test",
    "num_classes",
    "class_names",
    "content_sha256",
)


def summarize(pipeline: str, dataset: dict, baseline: str, selection: Selection, **extra) -> dict:
    """``summary.json`` payload: the variants plus ``selected`` / ``blessed`` and ``extra``."""
    prev = selection.previous
    return build_summary(
        pipeline,
        dataset,
        baseline,
        selection.records,
        selected=selection.selected,
        blessed=selection.blessed,
        selection_reason=selection.reason,
        policy=selection.policy,
        previous=({k: prev.get(k) for k in ("name", "accuracy", "path")} if prev else None),
        quality_floor=selection.floor,
        **({"champion": selection.champion} if selection.champion is not None else {}),
        **({"accuracy_noise": selection.noise} if selection.noise else {}),
        **extra,
    )


# --- the select step: summary, reports, model card, the selected model -------------


@dataclass
class SelectOutputs:
    """What :func:`select_and_report` wrote and decided."""

    summary: dict
    selection: Selection
    record: dict | None  # the selected candidate's full evaluation record


def copy_model(src: str, dst: str) -> None:
    """Copy a SavedModel directory or a model file to ``dst`` atomically."""
    if not fsutil.exists(src):
        raise ConfigError(f"selected model {src!r} does not exist (anymore)")
    files = fsutil.iter_files(src)
    single = files == [src]

    def copy_one(a: str, fh) -> None:
        opener = _gfile_open if fsutil.is_remote(a) else open
        with opener(a, "rb") as rh:
            for chunk in iter(lambda: rh.read(1 << 20), b""):
                fh.write(chunk)

    if single:
        with fsutil.atomic_file(dst, "wb") as fh:
            copy_one(src, fh)
        return
    with fsutil.atomic_dir(dst) as tmp:
        for f in files:
            rel = os.path.relpath(f, src)
            target = os.path.join(tmp, rel)
            fsutil.makedirs(os.path.dirname(target))
            opener = _gfile_open if fsutil.is_remote(target) else open
            with opener(target, "wb") as fh:
                copy_one(f, fh)


def _gfile_open(path: str, mode: str):
    from tfopt._keras import tf

    return tf.io.gfile.GFile(path, mode)


def select_and_report(
    evaluations: dict,
    baseline: str,
    policy: SelectionPolicy,
    pipeline: str,
    summary_path: str,
    markdown_path: str,
    html_path: str,
    model_card_path: str,
    selected_model_path: str | None = None,
    model_paths: dict[str, str] | None = None,
) -> SelectOutputs:
    """The whole select step: apply the policy, write summary, reports, card and model.

    Args:
        evaluations: the evaluation step's payload (``dataset``, ``candidates``).
        baseline: name of the baseline candidate.
        policy: the selection policy.
        pipeline: pipeline name recorded in the summary.
        summary_path / markdown_path / html_path / model_card_path: outputs.
        selected_model_path: where to copy the selected model (None = no copy).
        model_paths: candidate name -> readable path here (overrides the path the
            evaluation step recorded, which may be local to its container).
    """
    from tfopt.reporting import modelcard, report

    records = evaluations.get("candidates") or []
    selection = select_candidate(records, baseline, policy, evaluations.get("champion"))
    warning = (selection.noise or {}).get("warning")
    if warning:
        log.warning("%s", warning)  # the step's log says it too
    record = next((r for r in selection.records if r["name"] == selection.selected), None)
    dataset = {
        k: v for k, v in (evaluations.get("dataset") or {}).items() if k in SUMMARY_DATASET_KEYS
    }
    summary = summarize(
        pipeline,
        dataset,
        baseline,
        selection,
        report_html=html_path,
        model_card=model_card_path,
        evaluation=evaluations.get("config"),
        **(
            {"data_validation": evaluations["data_validation"]}
            if evaluations.get("data_validation")
            else {}
        ),
    )
    report.write_reports(
        summary, markdown_path, html_path, record.get("confusion_matrix") if record else None
    )
    with fsutil.atomic_file(model_card_path) as fh:
        fh.write(modelcard.model_card(summary, record))
    if record is not None and selected_model_path:
        src = (model_paths or {}).get(record["name"]) or record["path"]
        if not fsutil.exists(src) and record.get("uri"):
            src = record["uri"]
        copy_model(src, selected_model_path)
    fsutil.write_json(summary_path, summary)
    return SelectOutputs(summary, selection, record)
