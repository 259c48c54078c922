"""The models a candidate must beat by ``min_accuracy_change``: the champion, and a previous
run's pick.

The champion is the model the deploy target serves now (resolved by the ``validate-data``
step, :mod:`tfopt.deploy.champion`), evaluated in this run's ``evaluate`` step on this
run's test split with the same runtime as the candidates: new data that is harder or
easier moves both alike, and damaged test data cannot flatter the new model. A
``previous_summary`` compares with figures an older run measured on its own test split:
the weaker check, kept for compatibility.

The change is TFX's ``GenericChangeThreshold`` with ``HIGHER_IS_BETTER`` on accuracy: with
``change_mode`` ``absolute`` it is ``(candidate - reference)`` in accuracy points, with
``relative`` ``(candidate - reference) / reference`` in percent of the reference's accuracy
(TFMA's ``relative`` 0.01 is 1.0 here); a candidate passes when the change is at least
``min_accuracy_change`` (negative: the regression allowed).
"""

from __future__ import annotations

import logging
import os

from tfopt import fsutil
from tfopt.errors import ConfigError

log = logging.getLogger(__name__)

CHAMPION = "champion"  # the champion's name in evaluations.json, summary.json and the tables
CHANGE_MODES = ("absolute", "relative")
# what summary.json keeps of the champion's evaluation record
_RECORD_KEYS = (
    "format", "path", "accuracy", "loss", "precision", "recall", "f1", "size_bytes",
    "gzip_bytes", "latency_ms_p50", "latency_ms_p95", "latency_ms_p99", "throughput_per_s",
    "params", "sparsity", "peak_rss_bytes", "eval_seconds", "num_test", "error",
)  # fmt: skip


def champion_candidate(validation: dict | None):
    """The champion as one more :class:`~tfopt.evaluation.evaluate.Candidate` of the
    evaluate step (None when the validation found none it could use)."""
    champion = (validation or {}).get("champion") or {}
    if not champion.get("uri"):
        return None
    from tfopt.evaluation.evaluate import Candidate

    return Candidate(CHAMPION, champion["uri"], "saved_model", {"role": CHAMPION})


def champion_entry(validation: dict, record: dict | None) -> dict:
    """``summary.json``'s ``champion``: where it came from (``source``, ``version``,
    ``uri``) and its figures on this test split, or the ``reason`` there is none to compare
    with (none found, cannot be loaded, does not fit the data, failed to evaluate)."""
    entry = {"name": CHAMPION, **(validation.get("champion") or {})}
    entry["evaluated"] = record is not None and not record.get("error")
    if record is not None:
        entry.update({k: record[k] for k in _RECORD_KEYS if k in record})
    if record is not None and record.get("error"):
        entry["reason"] = (
            f"the champion at {entry.get('uri')} could not be evaluated on this test split "
            f"({record['error']}): compared without a champion"
        )
        log.warning("%s", entry["reason"])
    return entry


def accuracy_change(accuracy: float, reference: float, mode: str) -> float:
    """``accuracy - reference`` in points (``absolute``) or in percent of ``reference``
    (``relative``; inf / -inf / 0 for a reference of 0)."""
    diff = (accuracy - reference) * 100
    if mode == "absolute":
        return diff
    if reference == 0:
        return 0.0 if diff == 0 else float("inf") if diff > 0 else float("-inf")
    return diff / reference


def change_reasons(
    record: dict, policy, champion: dict | None, previous: dict | None = None
) -> list[str]:
    """The change thresholds ``record`` misses: against the evaluated champion, and against
    the ``previous`` run's pick (``policy``: a SelectionPolicy)."""
    reasons = []
    unit = "points" if policy.change_mode == "absolute" else "%"
    need = policy.min_accuracy_change
    refs = []
    if champion and champion.get("evaluated"):
        refs.append((champion["accuracy"], f"the champion ({_where(champion)})"))
    if previous is not None:
        refs.append((previous["accuracy"], "the previously blessed model"))
    for acc, what in refs:
        change = accuracy_change(record["accuracy"], acc, policy.change_mode)
        if change < need - 1e-9:
            reasons.append(
                f"accuracy change {change:+.2f} {unit} vs {what} ({acc * 100:.2f}%) < "
                f"{need:+g} {unit}"
            )
    return reasons


def _where(champion: dict) -> str:
    if champion.get("source") == "tf_serving":
        return f"TF Serving version {champion.get('version')}"
    if champion.get("source") == "vertex":
        return f"Vertex AI {champion.get('version')}"
    return str(champion.get("uri"))


def load_previous(path: str) -> dict | None:
    """The previously blessed model's record from a summary / evaluation JSON.

    Accepts a ``summary.json`` (its ``selected`` variant; None when nothing was
    blessed), a directory holding one, an evaluations JSON with ``candidates``
    and ``selected``, or a single record with ``accuracy``.
    """
    if fsutil.exists(os.path.join(path, "summary.json")):
        path = os.path.join(path, "summary.json")
    if not fsutil.exists(path):
        raise ConfigError(f"SelectionPolicy.previous={path!r} is not allowed: no such file")
    try:
        payload = fsutil.read_json(path)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a JSON file ({exc})") from None
    if isinstance(payload, dict) and "accuracy" in payload:
        return payload
    records = (
        (payload.get("variants") or payload.get("candidates"))
        if isinstance(payload, dict)
        else None
    )
    if records is None:
        raise ConfigError(
            f"{path}: expected a tfopt summary.json (variants, selected), an "
            "evaluations JSON (candidates, selected) or a record with accuracy"
        )
    if not payload.get("selected") or payload.get("blessed") is False:
        log.warning("%s: the previous run blessed no model; nothing to compare with", path)
        return None
    record = next((r for r in records if r.get("name") == payload["selected"]), None)
    if record is None or record.get("accuracy") is None:
        raise ConfigError(
            f"{path}: selected variant {payload['selected']!r} has no record with an accuracy"
        )
    return dict(record, dataset=payload.get("dataset"))
