"""The report's plots (PNG bytes, matplotlib's Agg backend): accuracy against a cost with
the Pareto front, and the confusion matrix.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from tfopt.reporting.sections import evaluated


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


def plot_tradeoff(summary: dict, metric: str, label: str, log_x: bool = False) -> bytes:
    """Accuracy against ``metric`` for every evaluated variant, Pareto front marked (PNG)."""
    plt = _pyplot()
    variants = evaluated(summary)
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
