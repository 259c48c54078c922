"""Selection policy: which candidate meets the targets, and why the others do not."""

from __future__ import annotations

from dataclasses import dataclass, field

from tfopt.config import check_choice, check_float, check_int
from tfopt.errors import ConfigError
from tfopt.summary import build_summary

OBJECTIVES = ("smallest", "fastest", "most_accurate")


@dataclass(frozen=True)
class SelectionPolicy:
    """Targets a candidate must meet, and how to choose among those that do.

    Attributes:
        max_accuracy_drop: accuracy points a candidate may lose against the baseline.
        max_size_bytes: largest allowed file size (0 = no limit).
        max_latency_ms_p99: largest allowed batch-1 p99 latency (0 = no limit).
        objective: ``smallest`` (size), ``fastest`` (p50 latency) or ``most_accurate``.
    """

    max_accuracy_drop: float = 1.0
    max_size_bytes: int = 0
    max_latency_ms_p99: float = 0.0
    objective: str = "smallest"

    def __post_init__(self):
        check_float("SelectionPolicy", "max_accuracy_drop", self.max_accuracy_drop, 0.0, 100.0)
        check_int("SelectionPolicy", "max_size_bytes", self.max_size_bytes, 0)
        check_float("SelectionPolicy", "max_latency_ms_p99", self.max_latency_ms_p99, 0.0)
        check_choice("SelectionPolicy", "objective", self.objective, OBJECTIVES)


@dataclass
class Selection:
    records: list[dict]
    selected: str | None
    blessed: bool
    reasons: dict[str, list[str]] = field(default_factory=dict)


def rejection_reasons(record: dict, base: dict, policy: SelectionPolicy) -> list[str]:
    if record.get("error"):
        return [f"failed to evaluate: {record['error']}"]
    reasons = []
    drop = (base["accuracy"] - record["accuracy"]) * 100
    if drop > policy.max_accuracy_drop:
        reasons.append(f"accuracy drop {drop:.2f} points > {policy.max_accuracy_drop:g}")
    if policy.max_size_bytes and record["size_bytes"] > policy.max_size_bytes:
        reasons.append(f"size {record['size_bytes']} bytes > {policy.max_size_bytes}")
    if policy.max_latency_ms_p99 and record["latency_ms_p99"] > policy.max_latency_ms_p99:
        reasons.append(f"p99 latency {record['latency_ms_p99']:.3f} ms > "
                       f"{policy.max_latency_ms_p99:g}")
    return reasons


def select_candidate(records: list[dict], baseline: str, policy: SelectionPolicy) -> Selection:
    """Apply ``policy``; the baseline itself is a candidate like any other."""
    if not records:
        raise ConfigError("no candidate to select from")
    base = next((r for r in records if r["name"] == baseline), None)
    if base is None or base.get("error"):
        raise ConfigError(f"baseline {baseline!r} is missing or failed to evaluate; "
                          f"candidates: {', '.join(r['name'] for r in records)}")
    reasons = {r["name"]: rejection_reasons(r, base, policy) for r in records}
    ok = [r for r in records if not reasons[r["name"]]]
    key = {"smallest": lambda r: (r["size_bytes"], -r["accuracy"]),
           "fastest": lambda r: (r["latency_ms_p50"], -r["accuracy"]),
           "most_accurate": lambda r: (-r["accuracy"], r["size_bytes"])}[policy.objective]
    best = min(ok, key=key) if ok else None
    out = [dict(r, rejected_reasons=reasons[r["name"]]) for r in records]
    return Selection(out, best["name"] if best else None, best is not None, reasons)


def summarize(pipeline: str, dataset: dict, baseline: str, selection: Selection) -> dict:
    return build_summary(pipeline, dataset, baseline, selection.records,
                         selected=selection.selected, blessed=selection.blessed)
