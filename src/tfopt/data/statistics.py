"""Dataset statistics, computed in ingest's own pass: ``statistics.json`` in the dataset artifact.

Per split and per numeric feature: count, mean, std, min, max, the missing (NaN / inf) count
and a histogram; per split the class distribution; for image folders the distribution of the
images' sizes before any resize. What a "feature" is depends on the example's shape:

- a vector of at most :data:`MAX_FEATURES` values (CSV, ``.npz`` rows): each value, ``x[i]``;
- an image ``(height, width, channels)``: each channel, ``x[..., c]`` (pixels pooled);
- anything else: all values pooled, ``x``.

Histograms sit on a dyadic grid: bin width ``2**k`` and edges at multiples of it, so two
histograms of the same feature always nest (one's edges are a subset of the other's) and
:func:`tfopt.data.drift` compares them on the coarser grid exactly, with no assumption about
where values lie inside a bin. uint8 features (images) get one bin per value (256).

These statistics travel with every SavedModel tfopt writes (``tfopt_data.json``, see
:mod:`tfopt.model_info`), so the next run can compare its data with the data the deployed
model was trained on.
"""

from __future__ import annotations

import math
import os

import numpy as np

from tfopt import fsutil
from tfopt.data.schema import DatasetInfo

STATISTICS_FILE = "statistics.json"
STATISTICS_FORMAT = "tfopt.statistics/v1"
MAX_FEATURES = 1024  # per-value statistics for vectors up to this length
FLOAT_BINS = 64
_UINT8_BINS = 256


def feature_names(shape: tuple[int, ...]) -> tuple[str, list[str]]:
    """``(axis, names)``: how the values of one example are grouped into features."""
    if len(shape) == 1 and shape[0] <= MAX_FEATURES:
        return "feature", [f"x[{i}]" for i in range(shape[0])]
    if len(shape) == 3:
        return "channel", [f"x[..., {c}]" for c in range(shape[2])]
    return "all", ["x"]


class _Histograms:
    """Histograms of G features on dyadic grids: ``lo[g] + i * width[g]``, ``bins`` bins."""

    def __init__(self, groups: int, bins: int, fixed: tuple[float, float] | None = None):
        self.bins = bins
        self.counts = np.zeros((groups, bins), np.int64)
        self.lo = np.zeros(groups) if fixed is None else np.full(groups, fixed[0])
        self.width = np.zeros(groups) if fixed is None else np.full(groups, fixed[1])
        self.fixed = fixed is not None

    def add(self, values: np.ndarray, mins: np.ndarray, maxs: np.ndarray) -> None:
        """``values``: ``[n, G]`` numbers (NaN where missing: left out)."""
        if self.fixed:  # uint8: the value is the bin
            for g in range(values.shape[1]):
                self.counts[g] += np.bincount(values[:, g], minlength=self.bins)
            return
        for g in np.flatnonzero(np.isfinite(mins)).tolist():
            self._cover(g, float(mins[g]), float(maxs[g]))
        ok = np.isfinite(values)
        width = np.where(self.width > 0, self.width, 1.0)
        with np.errstate(invalid="ignore"):
            idx = np.floor((np.where(ok, values, self.lo) - self.lo) / width).astype(np.int64)
        idx = np.clip(idx, 0, self.bins - 1) + np.arange(values.shape[1]) * self.bins
        counts = np.bincount(idx[ok] if not ok.all() else idx.ravel(), minlength=self.counts.size)
        self.counts += counts.reshape(self.counts.shape)

    def _cover(self, g: int, low: float, high: float) -> None:
        """Grow feature ``g``'s grid (doubling its width) until it holds ``[low, high]``; the
        counts move to the coarser bins exactly (each old bin lies inside one new bin)."""
        lo, width, bins = float(self.lo[g]), float(self.width[g]), self.bins
        if width == 0:  # the first values: the finest grid that holds them
            self.width[g] = width = _grid_width(low, high, bins)
            self.lo[g] = math.floor(low / width) * width
            return
        if low >= lo and high < lo + bins * width:
            return
        used = np.flatnonzero(self.counts[g])
        if len(used):  # the new grid holds the old bins that hold values
            low, high = min(low, lo + used[0] * width), max(high, lo + used[-1] * width)
        new_width = _grid_width(low, high, bins, at_least=width)
        new_lo = math.floor(low / new_width) * new_width
        target = np.floor((lo + used * width - new_lo) / new_width).astype(np.int64)
        moved = np.zeros(bins, np.int64)
        np.add.at(moved, target, self.counts[g][used])
        self.counts[g], self.lo[g], self.width[g] = moved, new_lo, new_width


def _grid_width(low: float, high: float, bins: int, at_least: float = 0.0) -> float:
    """The smallest ``2**k`` (>= ``at_least``) whose grid of ``bins`` bins, aligned at
    multiples of it, holds ``[low, high]``."""
    span = max(high - low, 1e-12)
    width = max(2.0 ** math.floor(math.log2(span / bins)), at_least)
    while math.floor(low / width) * width + bins * width <= high:
        width *= 2
    return width


class SplitStatistics:
    """Running statistics of one split: moments, extremes, missing values, histograms."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype):
        self.axis, self.names = feature_names(shape)
        g = len(self.names)
        self.uint8 = np.dtype(dtype) == np.uint8
        self.hist = (
            _Histograms(g, _UINT8_BINS, fixed=(0.0, 1.0))
            if self.uint8
            else _Histograms(g, FLOAT_BINS)
        )
        self.count = np.zeros(g, np.int64)
        self.missing = np.zeros(g, np.int64)
        self.sum = np.zeros(g)
        self.sumsq = np.zeros(g)
        self.min = np.full(g, np.inf)
        self.max = np.full(g, -np.inf)
        self.labels = np.zeros(0, np.int64)

    def _values(self, x: np.ndarray) -> np.ndarray:
        """``[n_values, G]``: each row one value of every feature."""
        n = len(x)
        if self.axis == "feature":
            return x.reshape(n, -1)
        if self.axis == "channel":
            return x.reshape(-1, x.shape[-1])
        return x.reshape(-1, 1)

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        values = self._values(x)
        counts = np.bincount(y)
        size = max(len(self.labels), len(counts))
        self.labels = np.pad(self.labels, (0, size - len(self.labels))) + np.pad(
            counts, (0, size - len(counts))
        )
        if self.uint8:  # moments from the exact histogram at the end: one pass here
            self.count += len(values)
            self.hist.add(values, self.min, self.max)
            return
        finite = np.isfinite(values)
        bad = (~finite).sum(axis=0)
        self.missing += bad
        v = np.where(finite, values, np.nan) if bad.any() else values
        mins, maxs = np.nanmin(v, axis=0), np.nanmax(v, axis=0)
        self.count += len(v) - bad
        self.sum += np.nansum(v, axis=0, dtype=np.float64)
        self.sumsq += np.nansum(np.square(v, dtype=np.float64), axis=0)
        self.min, self.max = np.fmin(self.min, mins), np.fmax(self.max, maxs)
        self.hist.add(v, mins, maxs)

    def result(self, num_classes: int) -> dict:
        counts = self.hist.counts
        if self.uint8:
            value = np.arange(_UINT8_BINS, dtype=np.float64)
            self.sum, self.sumsq = counts @ value, counts @ (value * value)
            seen = counts > 0
            self.min = np.where(seen.any(axis=1), seen.argmax(axis=1), np.nan)
            self.max = np.where(
                seen.any(axis=1), _UINT8_BINS - 1 - seen[:, ::-1].argmax(axis=1), np.nan
            )
        n = np.maximum(self.count, 1)
        mean = self.sum / n
        std = np.sqrt(np.maximum(self.sumsq / n - mean * mean, 0.0))
        labels = np.pad(self.labels, (0, max(num_classes - len(self.labels), 0)))
        total = int(labels.sum())
        return {
            "num_examples": total,
            "class_counts": labels.tolist(),
            "class_distribution": [round(c / total, 6) if total else 0.0 for c in labels],
            "features": [
                {
                    "name": name,
                    "count": int(self.count[g]),
                    "missing": int(self.missing[g]),
                    "mean": _num(mean[g]),
                    "std": _num(std[g]),
                    "min": _num(self.min[g]),
                    "max": _num(self.max[g]),
                    "histogram": {
                        "lo": float(self.hist.lo[g]),
                        "width": float(self.hist.width[g]),
                        "counts": _trim(counts[g]),
                    },
                }
                for g, name in enumerate(self.names)
            ],
        }


def _num(v) -> float | None:
    return round(float(v), 6) if np.isfinite(v) else None


def _trim(counts: np.ndarray) -> dict:
    """Counts without the empty bins at either end: ``{"first": i, "counts": [...]}``."""
    nz = np.flatnonzero(counts)
    if not len(nz):
        return {"first": 0, "values": []}
    return {"first": int(nz[0]), "values": counts[nz[0] : nz[-1] + 1].tolist()}


class DatasetStatistics:
    """The statistics of every split, fed chunk by chunk as ingest writes them."""

    def __init__(self) -> None:
        self.splits: dict[str, SplitStatistics] = {}

    def add(self, split: str, x: np.ndarray, y: np.ndarray) -> None:
        if split not in self.splits:
            self.splits[split] = SplitStatistics(tuple(x.shape[1:]), x.dtype)
        self.splits[split].add(x, y)

    def result(
        self, shape: tuple[int, ...], dtype: str, num_classes: int, image_sizes: dict | None
    ) -> dict:
        axis, _ = feature_names(shape)
        return {
            "format": STATISTICS_FORMAT,
            "feature_shape": list(shape),
            "feature_dtype": dtype,
            "num_classes": num_classes,
            "feature_axis": axis,
            "splits": {s: st.result(num_classes) for s, st in self.splits.items()},
            **({"image_sizes": image_sizes} if image_sizes else {}),
        }


def histogram_counts(feature: dict) -> tuple[float, float, np.ndarray]:
    """``(lo, width, counts)`` of a feature's stored histogram (leading empty bins restored)."""
    h = feature["histogram"]
    first, values = h["counts"]["first"], h["counts"]["values"]
    return h["lo"] + first * h["width"], h["width"], np.asarray(values, np.float64)


DATA_RECORD_FORMAT = "tfopt.model_data/v1"


def data_record(info: DatasetInfo) -> dict:
    """What a model carries about the data it was trained on (``tfopt_data.json``): the
    dataset's identity and schema, and its statistics (None when it has none)."""
    return {
        "format": DATA_RECORD_FORMAT,
        "dataset": {
            "name": info.name,
            "content_sha256": info.content_sha256,
            "feature_shape": list(info.feature_shape),
            "feature_dtype": info.feature_dtype,
            "num_classes": info.num_classes,
            "class_names": list(info.class_names),
            "counts": dict(info.counts),
        },
        "statistics": load_statistics(info.path),
    }


def write_statistics(directory: str, stats: dict) -> None:
    fsutil.write_json(os.path.join(directory, STATISTICS_FILE), stats)


def load_statistics(dataset_dir: str) -> dict | None:
    """A dataset artifact's statistics (None when it has none: ingested before they existed)."""
    path = os.path.join(dataset_dir, STATISTICS_FILE)
    return fsutil.read_json(path) if fsutil.exists(path) else None
