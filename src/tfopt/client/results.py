"""What ``tfopt run`` says about the candidates: formats the deploy target rules out, once.

Under ``deploy_target=tf_serving`` every ``.tflite`` row is rejected with
"format tflite cannot be deployed to tf_serving": true, but a newcomer reads
eight rejections as eight failures. The table leaves that reason out of the
rows (their status reads ``other target``) and one note above it says which
formats the target takes and names the best candidate for each other target,
decided by the selection's own rules (:mod:`tfopt.evaluation.select`).
"""

from __future__ import annotations

from dataclasses import replace

from tfopt.evaluation.select import (
    SelectionPolicy,
    floor_reasons,
    rejection_reasons,
    select_candidate,
)
from tfopt.registry import DEPLOY_TARGET_FORMATS, TARGET_NAMES

OTHER_TARGET = "other target"  # a row's status when only the target ruled it out


def _policy(summary: dict) -> SelectionPolicy | None:
    fields = set(SelectionPolicy.__dataclass_fields__)
    policy = summary.get("policy") or {}
    try:
        return SelectionPolicy(**{k: v for k, v in policy.items() if k in fields})
    except Exception:  # an older or hand-written summary: no note rather than no table
        return None


def _reasons(record: dict, base: dict | None, policy: SelectionPolicy, summary: dict) -> list[str]:
    floor = summary.get("quality_floor")
    out = rejection_reasons(record, base, policy, summary.get("previous"), summary.get("champion"))
    return out + (floor_reasons(record, floor) if floor else [])


def target_reasons(summary: dict) -> dict[str, list[str]]:
    """Per variant, the rejection reasons that only the deploy target's formats give."""
    policy = _policy(summary)
    if policy is None or not policy.formats:
        return {}
    anywhere = replace(policy, deploy_target="none")
    base = _base(summary)
    out = {}
    for record in summary["variants"]:
        if record.get("error"):
            continue
        here = rejection_reasons(
            record, base, policy, summary.get("previous"), summary.get("champion")
        )
        elsewhere = set(
            rejection_reasons(
                record, base, anywhere, summary.get("previous"), summary.get("champion")
            )
        )
        only_target = [r for r in here if r not in elsewhere]
        if only_target:
            out[record["name"]] = only_target
    return out


def best_for(summary: dict, target: str) -> str | None:
    """The candidate the selection would pick with ``deploy_target=target`` (None: none fits)."""
    policy = _policy(summary)
    floor = summary.get("quality_floor") or {}
    if policy is None or floor.get("baseline_passes") is False:
        return None
    policy = replace(policy, deploy_target=target)
    base = _base(summary)
    ok = [
        r
        for r in summary["variants"]
        if not r.get("error") and not _reasons(r, base, policy, summary)
    ]
    if not ok:
        return None
    # every record left is acceptable: select_candidate only orders them by the objective
    ordering = replace(policy, max_accuracy_drop=100.0, previous="", min_accuracy=0.0, min_f1=0.0)
    return select_candidate(ok, ok[0]["name"], ordering).selected


def target_note(summary: dict) -> list[str]:
    """Lines for above the table: what the target rules out, the best pick per other target."""
    policy = _policy(summary)
    ruled_out = target_reasons(summary)
    if policy is None or not ruled_out:
        return []
    formats = sorted(
        {r["format"] for r in summary["variants"] if r["name"] in ruled_out and r.get("format")}
    )
    target = policy.deploy_target
    n = len(ruled_out)
    lines = [
        f"deploy target {target} takes {' or '.join(policy.formats)} only: the {n} "
        f"{'/'.join(formats)} row{'s are' if n != 1 else ' is'} for other targets "
        f"(status '{OTHER_TARGET}')"
    ]
    best = []
    seen: set[tuple[str, ...]] = {policy.formats}
    for other, takes in DEPLOY_TARGET_FORMATS.items():
        if not takes or takes in seen:
            continue
        seen.add(takes)
        pick = best_for(summary, other)
        record = next((r for r in summary["variants"] if r["name"] == pick), None)
        if record:
            best.append(
                f"{TARGET_NAMES.get(other, other)}: {pick} ({record['size_bytes'] / 1024:.1f} KB, "
                f"{record['accuracy'] * 100:.2f}%)"
            )
        else:
            best.append(f"{TARGET_NAMES.get(other, other)}: none meets the policy")
    if summary.get("selected"):
        best.insert(0, f"{TARGET_NAMES.get(target, target)}: {summary['selected']} (selected)")
    lines.append("best per target: " + "; ".join(best))
    return lines


def _base(summary: dict) -> dict | None:
    base = next((v for v in summary["variants"] if v["name"] == summary.get("baseline")), None)
    return None if base is None or base.get("error") else base
