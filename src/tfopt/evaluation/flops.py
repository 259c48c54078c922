"""Each candidate's FLOPs (multiply-adds of one example), where a compress step reported them.

Channel pruning writes ``flops`` (after) and ``flops_removed`` (against its input, the
baseline) into its model's metadata; evaluate copies them into the record (``KEYS``).
From those, ``carry`` gives the rest of the lineage its figure: the baseline the
``flops_before`` of a variant made from it, and a TFLite child its parent's (conversion
keeps every multiply-add). A candidate no step reported for has none.
"""

from __future__ import annotations

KEYS = ("flops", "flops_before", "flops_removed")  # copied from a candidate's metadata


def carry(baseline: str, records: list[dict]) -> None:
    """Fill in ``flops`` (and ``flops_source``: where it came from) along the lineage."""
    by_name = {r["name"]: r for r in records}
    for r in records:
        if r.get("flops"):
            r.setdefault("flops_source", "metadata")
        removed = r.get("flops_removed")
        if r.get("flops") and removed is not None and removed < 1:
            r.setdefault("flops_before", round(r["flops"] / (1 - removed)))
    ref = by_name.get(baseline)
    donor = next((r for r in records if r.get("base") == baseline and r.get("flops_before")), None)
    if ref is not None and donor is not None and not ref.get("flops"):
        ref.update(flops=donor["flops_before"], flops_source=f"flops_before of {donor['name']}")
    for r in records:
        parent = by_name.get(r.get("base") or "") or {}
        if r.get("format") == "tflite" and not r.get("flops") and parent.get("flops"):
            r.update(flops=parent["flops"], flops_source=f"base {parent['name']}")
