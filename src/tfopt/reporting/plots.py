"""The report's plots (PNG bytes, matplotlib's Agg backend): accuracy against a cost with
the Pareto front, and the confusion matrix.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from tfopt.reporting.sections import evaluated, other_target, served


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


# how each kind of point is drawn; "other target": a format the deploy target does not
# serve (the table's status says the same), not a failure
STYLES = {
    "acceptable": dict(c="#1f77b4", marker="o"),
    "rejected": dict(c="#999999", marker="x"),
    "other target": dict(facecolors="none", edgecolors="#7f7f7f", marker="s"),
}


def tradeoff_points(summary: dict, metric: str) -> list[dict]:
    """Every evaluated variant as a point: ``x`` (``metric``), ``y`` (accuracy %), its
    ``role`` (a key of STYLES), whether it is on the Pareto ``front``, and whether it is
    named on the plot (``label``: the front, the selected and the baseline only; the
    table lists the rest, whose names would print over each other where points cluster)."""
    named = {summary.get("selected"), summary.get("baseline")}
    out, servable = [], []
    for v in evaluated(summary):
        if other_target(summary, v):
            role = "other target"
        else:
            role = "rejected" if v.get("rejected_reasons") else "acceptable"
        x, y = float(v[metric]), float(v["accuracy"]) * 100
        out.append(dict(name=v["name"], x=x, y=y, role=role, front=False, label=False))
        if served(summary, v):
            servable.append(out[-1])
    # the front of what the target can serve (of all, when it serves none of them)
    mine = servable or out
    for i in pareto_front([(p["x"], p["y"]) for p in mine]):
        mine[i]["front"] = True
    for p in out:
        p["label"] = p["front"] or p["name"] in named
    return out


def _label(ax, points: list[dict]) -> None:
    """Name ``points`` beside them, each label moved down until it clears those placed
    (in display space, so log axes and clusters of points alike), and to the left of
    its point near the right edge."""
    ax.get_xlim(), ax.get_ylim()  # the autoscaled limits, before reading positions
    px = ax.figure.dpi / 72  # pixels per typographic point
    width, height = 80 * px, 9 * px  # a 7-point name, about
    placed: list[tuple[float, float]] = []
    for p in sorted(points, key=lambda p: -p["y"]):
        x, y = ax.transData.transform((p["x"], p["y"]))
        ty = y + 4 * px
        while any(abs(ox - x) < width and abs(oy - ty) < height for ox, oy in placed):
            ty -= height
        placed.append((x, ty))
        right = x > ax.bbox.x1 - width
        ax.annotate(
            p["name"],
            (p["x"], p["y"]),
            textcoords="offset points",
            xytext=(-6 if right else 6, (ty - y) / px),
            ha="right" if right else "left",
            fontsize=7,
        )


def _human_bytes(x: float, _pos=None) -> str:
    for unit, size in (("MB", 1e6), ("KB", 1e3)):
        if x >= size:
            return f"{x / size:g} {unit}"
    return f"{x:g} B"


def plot_tradeoff(summary: dict, metric: str, label: str, log_x: bool = False) -> bytes:
    """Accuracy against ``metric`` for every evaluated variant, Pareto front marked (PNG)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    plt = _pyplot()
    points = tradeoff_points(summary, metric)
    fig, ax = plt.subplots(figsize=(7.6, 4.0))
    for role, style in STYLES.items():
        mine = [p for p in points if p["role"] == role]
        if mine:
            xs, ys = [p["x"] for p in mine], [p["y"] for p in mine]
            ax.scatter(xs, ys, s=36, label=role, zorder=3, **style)
    front = sorted((p for p in points if p["front"]), key=lambda p: p["x"])
    if front:
        xs, ys = [p["x"] for p in front], [p["y"] for p in front]
        ax.step(xs, ys, where="post", color="#d62728", lw=1.5, ls="--", zorder=2)
        # hollow rings as well as the line: a front of one point has no line to see
        ax.scatter(xs, ys, s=110, facecolors="none", edgecolors="#d62728", lw=1.2, zorder=2)
        ax.plot([], [], color="#d62728", ls="--", marker="o", mfc="none", label="Pareto front")
    chosen = [p for p in points if p["name"] == summary.get("selected")]
    if chosen:
        ax.scatter(
            [chosen[0]["x"]],
            [chosen[0]["y"]],
            s=220,
            marker="*",
            c="#ff7f0e",
            edgecolors="black",
            zorder=4,
            label="selected",
        )
    if points:  # outside the axes: it covered points in the lower right
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if log_x:
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1-2-5 per decade
        ax.xaxis.set_minor_formatter(NullFormatter())  # "2x10^4 3x10^4 ..." collided
    plain = FuncFormatter(lambda x, _pos: f"{x:g}")  # 0.002 0.005 0.01, not 10^-2 alone
    ax.xaxis.set_major_formatter(FuncFormatter(_human_bytes) if metric.endswith("bytes") else plain)
    ax.margins(x=0.06, y=0.1)  # room for the names of points at the edges
    _label(ax, [p for p in points if p["label"]])  # after the scale: positions are final
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


def plot_search(search: dict) -> bytes:
    """One search's trials (``sections.searched``): accuracy drop against the knob's value,
    numbered in the order they ran, within-budget ones filled, the chosen value starred,
    the search's budget (its ``max_accuracy_drop``, when on) a dashed line; each trial's
    file size on the right axis (PNG)."""
    plt = _pyplot()
    knob, trials = search["knob"], search["trials"]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for fits, style, name in ((True, STYLES["acceptable"], "within budget"),
                              (False, STYLES["rejected"], "over budget")):  # fmt: skip
        mine = [t for t in trials if bool(t.get("fits")) == fits]
        if mine:
            xs, ys = [t[knob] for t in mine], [t["drop_points"] for t in mine]
            ax.scatter(xs, ys, s=40, zorder=3, label=name, **style)
    for i, t in enumerate(trials, 1):
        ax.annotate(str(i), (t[knob], t["drop_points"]), textcoords="offset points",
                    xytext=(5, 4), fontsize=7)  # fmt: skip
    chosen = [t for t in trials if t[knob] == search.get("chosen")]
    if chosen:
        ax.scatter([chosen[0][knob]], [chosen[0]["drop_points"]], s=200, marker="*",
                   c="#ff7f0e", edgecolors="black", zorder=4, label="chosen")  # fmt: skip
    budget = search.get("max_accuracy_drop")
    if budget is not None and budget >= 0:  # < 0: the check was off
        ax.axhline(budget, color="#d62728", ls="--", lw=1.2, label="budget")
    sizes = ax.twinx()  # stronger settings are smaller: the size says what the drop buys
    order = sorted(trials, key=lambda t: t[knob])
    sizes.plot([t[knob] for t in order], [t["size_bytes"] for t in order], color="#7f7f7f",
               ls=":", marker="s", ms=3, lw=1)  # fmt: skip
    from matplotlib.ticker import FuncFormatter

    sizes.yaxis.set_major_formatter(FuncFormatter(_human_bytes))
    ax.plot([], [], color="#7f7f7f", ls=":", marker="s", ms=3, label="file size (right)")
    sizes.set_ylabel("file size", fontsize=8, color="#555")
    sizes.tick_params(labelsize=7, colors="#555")
    ax.set_xlabel(knob)
    ax.set_ylabel("accuracy drop (points)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.14, 1.0), borderaxespad=0)
    ax.set_title(f"search over {knob}: {search['name']}", fontsize=10)
    return _png(fig)


FAMILY_STYLES = {  # how each runtime's points are drawn on the FLOPs plot
    "saved_model": dict(c="#1f77b4", marker="o", label="SavedModel vs the baseline"),
    "tflite": dict(c="#2ca02c", marker="^", label="int8 TFLite vs tflite_int8"),
}


def plot_flops_latency(points: list[dict]) -> bytes:
    """Batch-1 p50 latency against the FLOPs removed (``sections.flops_points``), each
    candidate against its runtime's reference, the references at (0, 1); the dashed line
    is latency in proportion to FLOPs, what removing them would give at best (PNG)."""
    from matplotlib.ticker import FuncFormatter

    plt = _pyplot()
    drawn = [dict(p, x=p["removed"] * 100, y=p["ratio"]) for p in points]
    others = [p for p in drawn if p["name"] != p["reference"]]
    fig, ax = plt.subplots(figsize=(7.6, 4.0))
    top = min(max([p["x"] for p in drawn] + [10.0]) * 1.1, 100.0)
    ax.plot([0, top], [1, 1 - top / 100], color="#d62728", ls="--", lw=1.2,
            label="latency in proportion to FLOPs")  # fmt: skip
    ax.axhline(1, color="#7f7f7f", lw=0.8, ls=":")
    for fmt, style in FAMILY_STYLES.items():
        mine = [p for p in others if p["format"] == fmt]
        if mine:
            ax.scatter([p["x"] for p in mine], [p["y"] for p in mine], s=40, zorder=3, **style)
    ax.scatter([0], [1], s=50, marker="D", c="black", zorder=4,
               label="each runtime's baseline")  # fmt: skip
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_xlim(-top * 0.05, top)
    ax.set_ylim(0, max([p["y"] for p in drawn] + [1.0]) * 1.12)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}%"))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y:g}x"))
    _label(ax, others)
    ax.set_xlabel("FLOPs removed vs the baseline")
    ax.set_ylabel("batch-1 p50 latency (x baseline)")
    ax.grid(True, alpha=0.3)
    ax.set_title("latency vs FLOPs removed", fontsize=10)
    return _png(fig)
