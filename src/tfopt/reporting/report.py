"""The evaluation report: Markdown and self-contained HTML (plots embedded as PNG).

Both are built from the run summary (``summary.json``) and the full
evaluation records (for the confusion matrix), so they show exactly what the
selection saw. The HTML page needs nothing else: CSS inline, plots as
base64 ``data:`` URIs (matplotlib, Agg backend), so it renders in the KFP and
Vertex AI artifact viewers, which show an HTML artifact in a sandboxed frame.

Both render the same sections (:mod:`tfopt.reporting.sections`); the plots are in
:mod:`tfopt.reporting.plots`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from tfopt import fsutil
from tfopt.reporting.data_report import validation_html, validation_lines
from tfopt.reporting.plots import (
    pareto_front,
    plot_confusion,
    plot_flops_latency,
    plot_search,
    plot_tradeoff,
)
from tfopt.reporting.sections import (
    MD_COLUMNS,
    candidate_rows,
    class_label,
    edge_candidates,
    evaluated,
    flops_points,
    flops_rows,
    measurement_note,
    policy_lines,
    search_rows,
    searched,
)

__all__ = ["html_report", "markdown_report", "pareto_front", "write_reports"]


_FLOPS_NOTE = (
    "Multiply-adds per example against batch-1 p50 latency, each candidate against the "
    "baseline in its runtime (a SavedModel against the baseline, an int8 TFLite model "
    "against `tflite_int8`); latency in proportion to FLOPs would make `p50 x baseline` "
    "1 - the FLOPs removed."
)


def _md_table(rows: list[dict]) -> list[str]:
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    return out + ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]


def _html_table(rows: list[dict], selected=lambda r: False, text=()) -> str:
    """A table of ``rows`` (dicts of one shape); ``text`` columns are not right-aligned."""
    e, heads = html.escape, list(rows[0])
    out = ["<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in heads) + "</tr>"]
    out += [
        f"<tr class='{'selected' if selected(r) else ''}'>"
        + "".join(f"<td{'' if c in text else ' class=n'}>{e(r[c])}</td>" for c in heads)
        + "</tr>"
        for r in rows
    ]
    return "\n".join(out + ["</table>"])


def markdown_report(summary: dict) -> str:
    """The report as Markdown (tables only; the KFP Markdown viewer shows no images)."""
    ds = summary.get("dataset") or {}
    sel = summary.get("selected")
    out = [f"# {summary.get('pipeline', 'tfopt')}: model evaluation", ""]
    verdict = (
        f"**Selected: `{sel}` - blessed for deployment.**"
        if summary.get("blessed")
        else "**No candidate selected - not blessed; deployment is skipped.**"
    )
    out += [verdict, "", summary.get("selection_reason") or "", ""]
    out += [
        f"Dataset `{ds.get('name', '?')}`: {ds.get('num_test', '?')} test examples, "
        f"{ds.get('num_classes', '?')} classes (train {ds.get('num_train', '?')}).",
        "",
    ]
    if ds.get("class_names"):
        out += [f"Classes, in label-id order: {', '.join(ds['class_names'])}.", ""]
    policy = policy_lines(summary)
    if policy:
        out += ["## Policy", ""] + [f"- {line}" for line in policy] + [""]
    rows = candidate_rows(summary)
    out += [
        "## Candidates",
        "",
        "| " + " | ".join(MD_COLUMNS) + " |",
        "|" + "|".join("---" for _ in MD_COLUMNS) + "|",
    ]
    out += ["| " + " | ".join(r[c].replace("|", "/") for c in MD_COLUMNS) + " |" for r in rows]
    edge = edge_candidates(summary)
    rejected = [r for r in rows if r["reasons"] and r["variant"] not in edge]
    if rejected:
        out += ["", "## Rejected", ""]
        out += [f"- `{r['variant']}`: {r['reasons']}" for r in rejected]
    if edge:
        target = (summary.get("policy") or {}).get("deploy_target")
        out += ["", "## Edge candidates (TFLite)", ""]
        out += [
            f"Measured for edge devices (`deploy_target=tflite`); `{target}` serves "
            "SavedModels only, so they are not selectable in this run.",
            "",
        ]
        out += [f"- `{r['variant']}`: {r['reasons']}" for r in rows if r["variant"] in edge]
    chosen = next((v for v in summary["variants"] if v["name"] == sel), None)
    if chosen and chosen.get("per_class"):
        pc = chosen["per_class"]
        out += [
            "",
            f"## Per-class metrics of `{sel}`",
            "",
            "| class | precision | recall | F1 | support |",
            "|---|---|---|---|---|",
        ]
        out += [
            f"| {class_label(ds, i)} | {p:.3f} | {r:.3f} | {f:.3f} | {s} |"
            for i, (p, r, f, s) in enumerate(
                zip(pc["precision"], pc["recall"], pc["f1"], pc["support"], strict=False)
            )
        ]
    points = flops_points(summary)
    if points:
        out += ["", "## FLOPs removed and latency", "", _FLOPS_NOTE, ""]
        out += _md_table(flops_rows(points))
    for search in searched(summary):
        out += ["", f"## Search: `{search['name']}` over `{search['knob']}`", ""]
        if search.get("cut"):
            out += [f"Cut before any trial, made at {search['knob']} = {search['chosen']}: "
                    f"{search['cut']}."]  # fmt: skip
            continue
        out += [f"Chose {search['knob']} = {search['chosen']}; `*` marks the chosen trial.", ""]
        out += _md_table(search_rows(search))  # a search that is not cut runs one trial
    if summary.get("data_validation"):
        out += ["", "## Data validation", "", *validation_lines(summary["data_validation"])]
    out += ["", "## How this was measured", "", measurement_note(summary), ""]
    return "\n".join(out)


_CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:16px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:24px}
table{border-collapse:collapse;font-size:12px}th,td{border:1px solid #ddd;padding:3px 6px}
th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.selected{background:#fff3cd;font-weight:600}tr.rejected{color:#888}
.ok{color:#1a7f37}.no{color:#b42318}.plots img{max-width:48%;margin:4px}
.note{font-size:12px;color:#555;max-width:900px}
"""


def _img(png: bytes, alt: str) -> str:
    return (
        f'<img alt="{html.escape(alt)}" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
    )


def html_report(summary: dict, confusion: Sequence[Sequence[int]] | None = None) -> str:
    """The report as one self-contained HTML page with embedded plots."""
    e = html.escape
    sel = summary.get("selected")
    ds = summary.get("dataset") or {}
    verdict = (
        f'<p class="ok"><b>Selected: {e(str(sel))} - blessed for deployment.</b></p>'
        if summary.get("blessed")
        else '<p class="no"><b>No candidate selected - not blessed; deployment is skipped.</b></p>'
    )
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{e(summary.get('pipeline', 'tfopt'))} evaluation</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{e(summary.get('pipeline', 'tfopt'))}: model evaluation</h1>",
        verdict,
        f"<p>{e(summary.get('selection_reason') or '')}</p>",
        f"<p>Dataset <code>{e(str(ds.get('name', '?')))}</code>: "
        f"{e(str(ds.get('num_test', '?')))} test examples, "
        f"{e(str(ds.get('num_classes', '?')))} classes"
        + (f": {e(', '.join(ds['class_names']))}" if ds.get("class_names") else "")
        + ".</p>",
    ]
    policy = policy_lines(summary)
    if policy:
        parts.append(
            "<h2>Policy</h2><ul>"
            + "".join(f"<li>{e(line.replace('`', ''))}</li>" for line in policy)
            + "</ul>"
        )
    cols = MD_COLUMNS + ("reasons",)
    rows = candidate_rows(summary)
    parts.append(
        "<h2>Candidates</h2><table><tr>" + "".join(f"<th>{e(c)}</th>" for c in cols) + "</tr>"
    )
    for r in rows:
        cls = "selected" if r["variant"] == sel else "rejected" if r["reasons"] else ""
        cells = "".join(
            f"<td{' class=n' if c not in ('variant', 'format', 'status', 'reasons') else ''}>"
            f"{e(r[c].replace('**', ''))}</td>"
            for c in cols
        )
        parts.append(f"<tr class='{cls}'>{cells}</tr>")
    parts.append("</table>")
    parts.append("<h2>Trade-offs</h2><div class='plots'>")
    if evaluated(summary):
        parts.append(
            _img(
                plot_tradeoff(summary, "size_bytes", "size (bytes)", log_x=True), "accuracy vs size"
            )
        )
        parts.append(
            _img(
                plot_tradeoff(summary, "latency_ms_p50", "batch-1 p50 latency (ms)", log_x=True),
                "accuracy vs latency",
            )
        )
    if sel and confusion is not None:
        parts.append(
            _img(
                plot_confusion(confusion, f"confusion matrix: {sel}", ds.get("class_names") or ()),
                "confusion matrix",
            )
        )
    parts.append("</div>")
    chosen = next((v for v in summary["variants"] if v["name"] == sel), None)
    if chosen and chosen.get("per_class"):
        pc = chosen["per_class"]
        parts.append(
            f"<h2>Per-class metrics of {e(str(sel))}</h2><table><tr><th>class</th>"
            "<th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
        )
        parts += [
            f"<tr><td>{e(class_label(ds, i))}</td><td class=n>{p:.3f}</td><td class=n>{r:.3f}</td>"
            f"<td class=n>{f:.3f}</td><td class=n>{s}</td></tr>"
            for i, (p, r, f, s) in enumerate(
                zip(pc["precision"], pc["recall"], pc["f1"], pc["support"], strict=False)
            )
        ]
        parts.append("</table>")
    points = flops_points(summary)
    if points:
        parts.append(
            "<h2>FLOPs removed and latency</h2>"
            f"<p class='note'>{e(_FLOPS_NOTE.replace('`', ''))}</p>"
            f"<div class='plots'>{_img(plot_flops_latency(points), 'latency vs FLOPs')}</div>"
        )
        parts.append(_html_table(flops_rows(points), text=("variant", "against")))
    for search in searched(summary):
        parts.append(f"<h2>Search: {e(search['name'])} over {e(search['knob'])}</h2>")
        if search.get("cut"):
            parts.append(
                f"<p class='note'>Cut before any trial, made at {e(search['knob'])} = "
                f"{e(str(search['chosen']))}: {e(search['cut'])}.</p>"
            )
            continue
        parts.append(f"<div class='plots'>{_img(plot_search(search), 'search trials')}</div>")
        rows = search_rows(search)  # a search that is not cut runs one trial
        parts.append(_html_table(rows, selected=lambda r: bool(r["chosen"])))
    if summary.get("data_validation"):
        parts.append(validation_html(summary["data_validation"]))
    parts.append(
        f"<h2>How this was measured</h2><p class='note'>"
        f"{e(measurement_note(summary))}</p></body></html>"
    )
    return "\n".join(parts)


def write_reports(
    summary: dict,
    markdown_path: str,
    html_path: str,
    confusion: Sequence[Sequence[int]] | None = None,
) -> None:
    """Write both reports atomically."""
    with fsutil.atomic_file(markdown_path) as fh:
        fh.write(markdown_report(summary))
    with fsutil.atomic_file(html_path) as fh:
        fh.write(html_report(summary, confusion))
