"""The run summary (``summary.json``) and its terminal table.

``summary.json`` is the contract with users and automation: later features
add fields, never rename or change the meaning of existing ones.
"""

from __future__ import annotations

from typing import Any

from tfopt.reporting.sections import failure

SUMMARY_FIELDS = (
    "name",
    "format",
    "path",
    "accuracy",
    "size_bytes",
    "gzip_bytes",
    "latency_ms_p50",
    "latency_ms_p99",
    # added by the evaluation feature
    "precision",
    "recall",
    "f1",
    "latency_ms_p95",
    "throughput_per_s",
    "params",
    "sparsity",
    "rejected_reasons",
)
TOP_LEVEL_DEFAULTS = {"selected": None, "blessed": False, "report_html": None, "model_card": None}
# Too big for the summary when there are many classes; kept in evaluations.json.
_LEFT_OUT = ("confusion_matrix",)


def build_summary(
    pipeline: str, dataset: dict, baseline: str, records: list[dict], **extra: Any
) -> dict:
    """Assemble the summary from evaluation records (one per candidate)."""
    variants = []
    for record in records:
        variant = {k: record.get(k) for k in SUMMARY_FIELDS}
        variant["rejected_reasons"] = list(record.get("rejected_reasons") or [])
        variant.update({k: v for k, v in record.items() if k not in variant and k not in _LEFT_OUT})
        variants.append(variant)
    return {
        "pipeline": pipeline,
        "dataset": dataset,
        "baseline": baseline,
        "variants": variants,
        **TOP_LEVEL_DEFAULTS,
        **extra,
    }


def format_table(
    summary: dict, said_above: dict[str, list[str]] | None = None, other: str = "other target"
) -> str:
    """A fixed-width comparison table; the selected variant is marked with ``*``.

    ``said_above`` maps a variant to reasons stated once above the table (the
    deploy target's formats): left out of its row, whose status is ``other``
    when no other reason remains.
    """
    said_above = said_above or {}
    selected = summary.get("selected")
    base = next((v for v in summary["variants"] if v["name"] == summary["baseline"]), None)
    base_acc = base.get("accuracy") if base else None
    header = (
        f"{'':1} {'variant':<16} {'format':<11} {'accuracy':>8} {'drop':>6} "
        f"{'F1':>6} {'size KB':>9} {'gzip KB':>9} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'ex/s':>8}  status"
    )
    lines = [header, "-" * len(header)]
    for v in summary["variants"]:
        mark = "*" if v["name"] == selected else " "
        if v.get("error"):
            status = "not made" if v.get("not_made") else "rejected"
            lines.append(f"{mark} {v['name']:<16} {v['format']:<11} {status}: {failure(v)[:110]}")
            continue
        drop = (base_acc - v["accuracy"]) * 100 if base_acc is not None else 0.0
        reasons = v.get("rejected_reasons") or []
        shown = [r for r in reasons if r not in said_above.get(v["name"], ())]
        status = (
            "rejected: " + "; ".join(shown)
            if shown
            else other
            if reasons
            else ("SELECTED" if mark == "*" else "ok")
        )
        f1 = f"{v['f1']:6.3f}" if v.get("f1") is not None else f"{'-':>6}"
        tput = (
            f"{v['throughput_per_s']:8.0f}"
            if v.get("throughput_per_s") is not None
            else f"{'-':>8}"
        )
        lines.append(
            f"{mark} {v['name']:<16} {v['format']:<11} {v['accuracy'] * 100:7.2f}% "
            f"{drop:5.2f}p {f1} {v['size_bytes'] / 1024:9.1f} {v['gzip_bytes'] / 1024:9.1f} "
            f"{v['latency_ms_p50']:8.4g} {v['latency_ms_p99']:8.4g} {tput}  {status}"
        )
    champion = summary.get("champion") or {}
    if champion.get("evaluated"):
        c = {k: champion.get(k) or 0 for k in _CHAMPION_FIGURES}
        drop = (base_acc - champion["accuracy"]) * 100 if base_acc is not None else 0.0
        lines.append(
            f"  {'champion':<16} {champion.get('format') or '-':<11} "
            f"{c['accuracy'] * 100:7.2f}% {drop:5.2f}p {c['f1']:6.3f} "
            f"{c['size_bytes'] / 1024:9.1f} {c['gzip_bytes'] / 1024:9.1f} "
            f"{c['latency_ms_p50']:8.4g} {c['latency_ms_p99']:8.4g} "
            f"{c['throughput_per_s']:8.0f}  {_champion_status(champion)}"
        )
    elif champion:
        lines.append(f"  (no champion: {champion.get('reason') or 'none found'})")
    warning = (summary.get("accuracy_noise") or {}).get("warning")
    if warning:
        lines.append(f"(!) {warning}")
    if summary.get("selection_reason"):
        lines.append(f"(*) selected: {summary['selection_reason']}")
    return "\n".join(lines)


_CHAMPION_FIGURES = (
    "accuracy", "f1", "size_bytes", "gzip_bytes", "latency_ms_p50", "latency_ms_p99",
    "throughput_per_s",
)  # fmt: skip


def _champion_status(champion: dict) -> str:
    where = {"tf_serving": f"TF Serving v{champion.get('version')}", "vertex": "Vertex"}.get(
        str(champion.get("source")), "champion_uri"
    )
    return f"deployed champion ({where}): the reference"
