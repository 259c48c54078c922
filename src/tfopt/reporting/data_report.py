"""The champion and the data validation, as report lines: the ``validate-data`` step's own
report and the section of the run's reports (``summary.json``'s ``data_validation``)."""

from __future__ import annotations

import html

_SHOWN_FEATURES = 8  # the most drifted features in the table; all are in the JSON


def champion_line(champion: dict | None) -> str:
    """One sentence: which champion the candidates were compared with, or why none."""
    if not champion:
        return "Champion: not looked up (no validate-data step)."
    if champion.get("uri"):
        where = {
            "tf_serving": f"TF Serving version {champion.get('version')} (stable)",
            "vertex": f"Vertex AI model {champion.get('version')}",
        }.get(str(champion.get("source")), "champion_uri")
        return f"Champion: {where}, `{champion['uri']}`."
    why = champion.get("reason") or "none found"
    return f"Champion: none, {why}; the value thresholds alone apply."


def validation_lines(dv: dict | None) -> list[str]:
    """Markdown lines for a ``data_validation`` entry (``{champion, validation}``)."""
    if not dv:
        return []
    v = dv.get("validation") or {}
    lines = [champion_line(dv.get("champion")), ""]
    status = v.get("status", "-")
    lines.append(f"Status: **{status}**" + (f" ({v['reason']})" if v.get("reason") else "") + ".")
    classes = v.get("classes") or {}
    if classes:
        lines += [
            "",
            f"Class distribution (train split): L-infinity distance {classes['linf']:.4f} "
            f"(threshold {classes['threshold']:g})"
            + (f"; disappeared: {classes['disappeared']}" if classes.get("disappeared") else "")
            + ".",
        ]
    features = v.get("features") or []
    if features:
        lines += [
            "",
            "| feature | Jensen-Shannon | threshold | mean (champion -> now) | "
            "range (champion -> now) | drift |",
            "|---|---:|---:|---|---|---|",
        ]
        for f in features[:_SHOWN_FEATURES]:
            js = "-" if f.get("js") is None else f"{f['js']:.4f}"
            lines.append(
                f"| {f['name']} | {js} | {f['threshold']:g} | {_pair(f.get('mean'))} | "
                f"[{_n(f['min'][0])}, {_n(f['max'][0])}] -> [{_n(f['min'][1])}, "
                f"{_n(f['max'][1])}] | {'**yes**' if f.get('drift') else 'no'} |"
            )
        if len(features) > _SHOWN_FEATURES:
            lines.append(f"\n({len(features) - _SHOWN_FEATURES} more features in the JSON.)")
    for title, key in (("Anomalies", "anomalies"), ("Warnings", "warnings")):
        items = v.get(key) or []
        if items:
            lines += ["", f"{title}:", *[f"- {a}" for a in items]]
    return lines


def validation_html(dv: dict) -> str:
    """The data validation section of the HTML report: the same lines, the table as one."""
    e = html.escape
    parts = ["<h2>Data validation</h2>"]
    table: list[str] = []
    for line in validation_lines(dv):
        if line.startswith("|"):
            if line.startswith("|---"):
                continue
            tag = "th" if not table else "td"
            cells = [c.strip().replace("**", "") for c in line.strip("|").split("|")]
            table.append("<tr>" + "".join(f"<{tag}>{e(c)}</{tag}>" for c in cells) + "</tr>")
            continue
        if table:
            parts.append("<table>" + "".join(table) + "</table>")
            table = []
        if line:
            parts.append(f"<p class='note'>{e(line.replace('**', '').replace('`', ''))}</p>")
    if table:
        parts.append("<table>" + "".join(table) + "</table>")
    return "\n".join(parts)


def _pair(values) -> str:
    return f"{_n(values[0])} -> {_n(values[1])}" if values else "-"


def _n(value) -> str:
    return "-" if value is None else f"{value:.4g}"
