"""The evaluation report: Markdown and self-contained HTML (plots embedded as PNG).

Both are built from the run summary (``summary.json``) and the full
evaluation records (for the confusion matrix), so they show exactly what the
selection saw. The HTML page needs nothing else: CSS inline, plots as
base64 ``data:`` URIs (matplotlib, Agg backend), so it renders in the KFP and
Vertex AI artifact viewers, which show an HTML artifact in a sandboxed frame.

Over 400 lines on purpose: the HTML and Markdown reports render the same sections from
the same summary; most lines are templates.
"""

from __future__ import annotations

import base64
import html
import io
import platform
from collections.abc import Sequence

from tfopt import fsutil


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: lower cost (x) and higher accuracy (y).

    A point is dominated when another has cost <= and accuracy >= with one of
    them strictly better. The front is returned sorted by cost.
    """
    front = []
    for i, (cx, ay) in enumerate(points):
        dominated = any(
            (ox <= cx and oy >= ay) and (ox < cx or oy > ay)
            for j, (ox, oy) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def _ok(summary: dict) -> list[dict]:
    return [v for v in summary["variants"] if not v.get("error") and v.get("accuracy") is not None]


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(summary: dict, metric: str, label: str, log_x: bool = False) -> bytes:
    """Accuracy against ``metric`` for every evaluated variant, Pareto front marked (PNG)."""
    plt = _pyplot()
    variants = _ok(summary)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    if variants:
        pts = [(float(v[metric]), float(v["accuracy"]) * 100) for v in variants]
        front = pareto_front(pts)
        rejected = [i for i, v in enumerate(variants) if v.get("rejected_reasons")]
        ok = [i for i in range(len(variants)) if i not in rejected]
        for idx, style, name in (
            (ok, dict(c="#1f77b4", marker="o"), "acceptable"),
            (rejected, dict(c="#999999", marker="x"), "rejected"),
        ):
            if idx:
                ax.scatter(
                    [pts[i][0] for i in idx],
                    [pts[i][1] for i in idx],
                    s=36,
                    label=name,
                    zorder=3,
                    **style,
                )
        ax.step(
            [pts[i][0] for i in front],
            [pts[i][1] for i in front],
            where="post",
            color="#d62728",
            lw=1.5,
            ls="--",
            label="Pareto front",
            zorder=2,
        )
        for i, v in enumerate(variants):
            ax.annotate(v["name"], pts[i], textcoords="offset points", xytext=(4, 4), fontsize=7)
            if v["name"] == summary.get("selected"):
                ax.scatter(
                    [pts[i][0]],
                    [pts[i][1]],
                    s=220,
                    marker="*",
                    c="#ff7f0e",
                    edgecolors="black",
                    zorder=4,
                    label="selected",
                )
        ax.legend(fontsize=7, loc="lower right")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"accuracy vs {label}", fontsize=10)
    return _png(fig)


def plot_confusion(
    matrix: Sequence[Sequence[int]], title: str, labels: Sequence[str] = ()
) -> bytes:
    """A confusion matrix heat map with counts (rows true, columns predicted) (PNG);
    ``labels`` name the classes on the axes."""
    import numpy as np

    plt = _pyplot()
    cm = np.asarray(matrix)
    n = len(cm)
    size = min(3.0 + 0.35 * n, 12.0)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if n <= 30:
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        if len(labels) == n:
            ax.set_xticklabels(labels, rotation=90, fontsize=7)
            ax.set_yticklabels(labels, fontsize=7)
        thresh = cm.max() / 2 if cm.size else 0
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(
                        j,
                        i,
                        str(cm[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if cm[i, j] > thresh else "black",
                    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=10)
    return _png(fig)


# --- tables -------------------------------------------------------------------------


def class_label(dataset: dict, i: int) -> str:
    """Class ``i`` as people read it: ``3 (Dress)`` when the dataset names its classes."""
    names = dataset.get("class_names") or []
    return f"{i} ({names[i]})" if i < len(names) else str(i)


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _rows(summary: dict) -> list[dict]:
    base = next((v for v in summary["variants"] if v["name"] == summary["baseline"]), None)
    base_acc = base.get("accuracy") if base and not base.get("error") else None
    rows = []
    for v in summary["variants"]:
        err = v.get("error")
        reasons = v.get("rejected_reasons") or ([f"failed to evaluate: {err}"] if err else [])
        status = (
            "**selected**"
            if v["name"] == summary.get("selected")
            else "rejected"
            if reasons
            else "acceptable"
        )
        acc = v.get("accuracy")
        drop = (base_acc - acc) * 100 if acc is not None and base_acc is not None else None
        rows.append(
            {
                "variant": v["name"],
                "format": v.get("format") or "-",
                "accuracy %": _fmt(acc * 100 if acc is not None else None, ".2f"),
                "drop (pts)": _fmt(drop, "+.2f"),
                "macro F1": _fmt(v.get("f1"), ".3f"),
                "precision": _fmt(v.get("precision"), ".3f"),
                "recall": _fmt(v.get("recall"), ".3f"),
                "params": _fmt(v.get("params"), ","),
                "sparsity": _fmt(v.get("sparsity"), ".1%"),
                "size KB": _fmt(v["size_bytes"] / 1024 if v.get("size_bytes") else None, ",.1f"),
                "gzip KB": _fmt(v["gzip_bytes"] / 1024 if v.get("gzip_bytes") else None, ",.1f"),
                "p50 ms": _fmt(v.get("latency_ms_p50"), ".4g"),
                "p95 ms": _fmt(v.get("latency_ms_p95"), ".4g"),
                "p99 ms": _fmt(v.get("latency_ms_p99"), ".4g"),
                "ex/s": _fmt(v.get("throughput_per_s"), ",.0f"),
                "peak MiB": _fmt(
                    v["peak_rss_bytes"] / 2**20 if v.get("peak_rss_bytes") else None, ",.0f"
                ),
                "status": status,
                "reasons": "; ".join(reasons),
            }
        )
    return rows


def _policy_lines(summary: dict) -> list[str]:
    p = summary.get("policy") or {}
    if not p:
        return []
    lines = [
        f"objective `{p.get('objective')}`",
        f"max accuracy drop {p.get('max_accuracy_drop')} points vs `{summary['baseline']}`",
        f"max size {p['max_size_bytes']:,} bytes" if p.get("max_size_bytes") else "no size limit",
        f"max p99 latency {p['max_latency_ms_p99']} ms"
        if p.get("max_latency_ms_p99")
        else "no latency limit",
    ]
    floor = summary.get("quality_floor") or {}
    if floor.get("required_accuracy") is not None:
        lines.append(
            f"quality floor: accuracy >= {floor['required_accuracy'] * 100:.2f}% (the "
            f"majority-class predictor scores {floor['majority_accuracy'] * 100:.2f}% on "
            f"{floor['num_test']} test examples)"
        )
    if floor.get("min_accuracy"):
        lines.append(f"min accuracy {floor['min_accuracy'] * 100:g}%")
    if floor.get("min_f1"):
        lines.append(f"min macro F1 {floor['min_f1']:g}")
    prev = summary.get("previous")
    if prev:
        lines.append(
            f"accuracy change >= {p.get('min_accuracy_change'):+g} points vs the "
            f"previously blessed model `{prev.get('name')}` "
            f"({prev['accuracy'] * 100:.2f}%)"
        )
    elif p.get("previous"):
        lines.append("previous run given but it blessed no model: no comparison")
    return lines


def _edge_candidates(summary: dict) -> set[str]:
    """TFLite variants of a run whose deploy target serves SavedModels only."""
    target = (summary.get("policy") or {}).get("deploy_target")
    if target not in ("tf_serving", "vertex"):
        return set()
    return {
        v["name"]
        for v in summary["variants"]
        if v.get("format") == "tflite" and not v.get("error") and not v.get("not_applicable")
    }


def _measurement_note(summary: dict) -> str:
    v = next((v for v in _ok(summary)), None)
    if v is None:
        return "No candidate could be evaluated."
    threads = sorted(
        {str(x.get("num_threads")) for x in _ok(summary) if x.get("format") == "tflite"}
    )
    return (
        f"Batch-1 latency over {v.get('latency_iterations')} timed calls after "
        f"{v.get('latency_warmup')} warm-up calls; throughput at batch "
        f"{v.get('throughput_batch_size')} over {v.get('throughput_iterations')} calls. "
        f"TFLite runtime {_tflite_runtime(summary)}"
        f" with {', '.join(threads) or '-'} thread(s) (0 = runtime default); SavedModels "
        "through their concrete serving_default function. Peak memory: resident "
        f"high-water mark of the evaluation process per candidate "
        f"({v.get('memory_method') or '-'}). Machine: {platform.machine()} "
        f"{platform.processor() or ''}, Python {platform.python_version()}."
    )


_MD_COLUMNS = (
    "variant",
    "format",
    "accuracy %",
    "drop (pts)",
    "macro F1",
    "params",
    "sparsity",
    "size KB",
    "gzip KB",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "ex/s",
    "peak MiB",
    "status",
)


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
    policy = _policy_lines(summary)
    if policy:
        out += ["## Policy", ""] + [f"- {line}" for line in policy] + [""]
    rows = _rows(summary)
    out += [
        "## Candidates",
        "",
        "| " + " | ".join(_MD_COLUMNS) + " |",
        "|" + "|".join("---" for _ in _MD_COLUMNS) + "|",
    ]
    out += ["| " + " | ".join(r[c].replace("|", "/") for c in _MD_COLUMNS) + " |" for r in rows]
    edge = _edge_candidates(summary)
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
    out += ["", "## How this was measured", "", _measurement_note(summary), ""]
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
    policy = _policy_lines(summary)
    if policy:
        parts.append(
            "<h2>Policy</h2><ul>"
            + "".join(f"<li>{e(line.replace('`', ''))}</li>" for line in policy)
            + "</ul>"
        )
    cols = _MD_COLUMNS + ("reasons",)
    rows = _rows(summary)
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
    if _ok(summary):
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
    parts.append(
        f"<h2>How this was measured</h2><p class='note'>"
        f"{e(_measurement_note(summary))}</p></body></html>"
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


def _tflite_runtime(summary: dict) -> str | None:
    return next((x.get("runtime") for x in _ok(summary) if x.get("format") == "tflite"), "-")
