"""Data validation: this run's data against the data the champion was trained on, and against
the schema, before any training (the ``validate-data`` step).

As TFX's ExampleValidator with a drift comparator (TFDV ``validate_statistics`` with
``previous_statistics``): the class distribution (categorical) is compared by the
L-infinity distance, each numeric feature's binned distribution by the Jensen-Shannon
divergence (base 2, in [0, 1], as TFDV computes it). Both read the statistics ingest wrote
(:mod:`tfopt.data.statistics`) for the training split; the champion's come from its
``tfopt_data.json``.

Anomalies: a distance over its threshold; a class of the champion's data with no example
now (a class disappeared); classes, feature shape or dtype that differ from the champion's;
missing values; a class of the schema with no training example. Any anomaly stops the run
(:class:`DataValidationError`, naming the feature and the distance) unless
``accept_drift`` is set, in which case it is reported and the run goes on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt.checks import check_float
from tfopt.data.statistics import histogram_counts
from tfopt.errors import DataError

SPLIT = "train"  # the data a model is trained on: what drift is measured on


class DataValidationError(DataError):
    """This run's data drifted from the champion's, or breaks the schema: the run stops."""


@dataclass(frozen=True)
class DriftConfig:
    """When the data counts as drifted from the champion's.

    Attributes:
        drift_linf_threshold: largest L-infinity distance allowed between the class
            distributions of this run's and the champion's training data (TFDV's
            ``infinity_norm``), in [0, 1].
        drift_js_threshold: largest Jensen-Shannon divergence (base 2) allowed between a
            numeric feature's binned distributions now and in the champion's training data
            (TFDV's ``jensen_shannon_divergence``), in [0, 1]; per feature of a vector, per
            channel of an image.
        accept_drift: go on when the data drifted, a class disappeared or the schema
            changed: the anomalies are reported, the run is not stopped (a champion whose
            classes or input shape differ is then left out of the comparison).
    """

    drift_linf_threshold: float = 0.1
    drift_js_threshold: float = 0.1
    accept_drift: bool = False

    def __post_init__(self):
        check_float("DriftConfig", "drift_linf_threshold", self.drift_linf_threshold, 0.0, 1.0)
        check_float("DriftConfig", "drift_js_threshold", self.drift_js_threshold, 0.0, 1.0)
        if not isinstance(self.accept_drift, bool):
            from tfopt.errors import ConfigError

            raise ConfigError(
                f"DriftConfig.accept_drift={self.accept_drift!r} is not allowed: expected "
                "true or false"
            )


def linf_distance(p: list[float], q: list[float]) -> float:
    """L-infinity distance between two distributions (padded with zeros to one length)."""
    n = max(len(p), len(q))
    a = np.pad(np.asarray(p, np.float64), (0, n - len(p)))
    b = np.pad(np.asarray(q, np.float64), (0, n - len(q)))
    a, b = a / max(a.sum(), 1e-300), b / max(b.sum(), 1e-300)
    return float(np.abs(a - b).max()) if n else 0.0


def js_divergence(feature_a: dict, feature_b: dict) -> float | None:
    """Jensen-Shannon divergence (base 2) between two features' stored histograms.

    Both grids are dyadic (width ``2**k``, edges at its multiples), so each bin of the
    finer one lies inside one bin of the coarser one: both are re-binned onto the coarser
    grid exactly. None when either histogram is empty.
    """
    lo_a, w_a, c_a = histogram_counts(feature_a)
    lo_b, w_b, c_b = histogram_counts(feature_b)
    if c_a.sum() <= 0 or c_b.sum() <= 0:
        return None
    width = max(w_a, w_b)
    cell_a = np.floor((lo_a + np.arange(len(c_a)) * w_a) / width).astype(np.int64)
    cell_b = np.floor((lo_b + np.arange(len(c_b)) * w_b) / width).astype(np.int64)
    first = min(cell_a.min(), cell_b.min())
    size = int(max(cell_a.max(), cell_b.max()) - first + 1)
    p = np.bincount(cell_a - first, weights=c_a, minlength=size)
    q = np.bincount(cell_b - first, weights=c_b, minlength=size)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(min(max((kl_p + kl_q) / 2, 0.0), 1.0))


@dataclass
class Validation:
    """What ``validate-data`` found (``to_dict`` goes to the report and ``summary.json``)."""

    status: str  # passed | drift_accepted | stopped | not_checked
    reason: str = ""
    thresholds: dict = field(default_factory=dict)
    classes: dict = field(default_factory=dict)
    features: list = field(default_factory=list)
    schema: list = field(default_factory=list)  # differences from the champion's data
    anomalies: list = field(default_factory=list)  # each stops the run (unless accepted)
    warnings: list = field(default_factory=list)  # reported only
    champion_comparable: bool = True  # classes and input shape match: it can be evaluated

    def to_dict(self) -> dict:
        return asdict(self)


def validate(
    current: dict, reference: dict | None, config: DriftConfig = DriftConfig()
) -> Validation:
    """Compare this run's data record with the champion's (``tfopt_data.json``) and the
    schema; never raises (see :func:`check`).

    Args:
        current: this run's data record (:func:`tfopt.data.statistics.data_record`).
        reference: the champion's data record; None = no champion. Its ``statistics`` may be
            None (a model written before tfopt recorded them): then only the schema (classes,
            input shape) is compared.
        config: thresholds and ``accept_drift``.
    """
    out = Validation(
        "passed",
        thresholds={
            "class_linf": config.drift_linf_threshold,
            "feature_js": config.drift_js_threshold,
        },
    )
    own = current.get("statistics")
    ds = current["dataset"]
    if own is not None:
        _own_schema(ds, own, out)
    if reference is None:
        out.status, out.reason = "not_checked", "no champion: nothing to compare the data with"
        return _verdict(out, config)
    ref_ds = reference.get("dataset") or {}
    _compare_schema(ds, ref_ds, out)
    ref = reference.get("statistics")
    if ref is None or own is None:
        whose = "the champion carries" if ref is None else "this dataset has"
        out.reason = (
            f"{whose} no data statistics (written before tfopt recorded them): drift not "
            "measured; classes and input shape compared"
        )
        out.status = "not_checked"
        return _verdict(out, config)
    _compare_classes(own, ref, config, out)
    _compare_features(own, ref, config, out)
    return _verdict(out, config)


def _own_schema(ds: dict, own: dict, out: Validation) -> None:
    """The dataset against its own schema (warnings: a first run has nothing to stop on):
    every declared class has training examples, no value is missing."""
    split = own["splits"].get(SPLIT) or {}
    for k, n in enumerate(split.get("class_counts") or []):
        if n == 0:
            out.warnings.append(f"class {_label(ds, k)} has no {SPLIT} example")
    for f in split.get("features") or []:
        if f.get("missing"):
            out.warnings.append(f"{f['name']}: {f['missing']} missing (NaN or infinite) values")


def _compare_schema(ds: dict, ref: dict, out: Validation) -> None:
    for key, what in (("feature_shape", "input shape"), ("feature_dtype", "feature dtype")):
        mine, theirs = ds.get(key), ref.get(key)
        if theirs is not None and mine is not None and list(_seq(mine)) != list(_seq(theirs)):
            out.schema.append(f"{what} {_show(mine)} but the champion's data had {_show(theirs)}")
            out.champion_comparable &= key != "feature_shape"
    k, ref_k = ds.get("num_classes"), ref.get("num_classes")
    if ref_k is not None and k != ref_k:
        out.schema.append(f"{k} classes but the champion has {ref_k}")
        out.champion_comparable = False
    names, ref_names = list(ds.get("class_names") or []), list(ref.get("class_names") or [])
    if names and ref_names and names != ref_names and k == ref_k:
        moved = [
            f"{i}: {a!r} was {b!r}"
            for i, (a, b) in enumerate(zip(names, ref_names, strict=False))
            if a != b
        ]
        out.schema.append(f"class names differ from the champion's ({'; '.join(moved[:5])})")
        out.champion_comparable = False
    out.anomalies += [f"schema: {s}" for s in out.schema]


def _compare_classes(own: dict, ref: dict, config: DriftConfig, out: Validation) -> None:
    now = (own["splits"].get(SPLIT) or {}).get("class_counts") or []
    then = (ref["splits"].get(SPLIT) or {}).get("class_counts") or []
    gone = [k for k, n in enumerate(then) if n > 0 and (k >= len(now) or now[k] == 0)]
    dist = linf_distance(now, then)
    out.classes = {
        "linf": round(dist, 6),
        "threshold": config.drift_linf_threshold,
        "drift": dist > config.drift_linf_threshold,
        "disappeared": gone,
        "distribution": _distribution(now),
        "champion_distribution": _distribution(then),
    }
    if gone:
        out.anomalies.append(
            f"class(es) {', '.join(map(str, gone))} disappeared: the champion's {SPLIT} data "
            f"had examples of them, this run's has none"
        )
    if dist > config.drift_linf_threshold:
        out.anomalies.append(
            f"label: class distribution drifted, L-infinity distance {dist:.4f} > "
            f"{config.drift_linf_threshold:g}"
        )


def _compare_features(own: dict, ref: dict, config: DriftConfig, out: Validation) -> None:
    now = {f["name"]: f for f in (own["splits"].get(SPLIT) or {}).get("features") or []}
    then = {f["name"]: f for f in (ref["splits"].get(SPLIT) or {}).get("features") or []}
    for name in [n for n in now if n in then]:
        a, b = now[name], then[name]
        js = js_divergence(a, b)
        drift = js is not None and js > config.drift_js_threshold
        out.features.append(
            {
                "name": name,
                "js": None if js is None else round(js, 6),
                "threshold": config.drift_js_threshold,
                "drift": drift,
                **{k: [b.get(k), a.get(k)] for k in ("mean", "std", "min", "max")},
            }
        )
        if drift:
            out.anomalies.append(
                f"{name}: distribution drifted, Jensen-Shannon divergence {js:.4f} > "
                f"{config.drift_js_threshold:g} (mean {_num(b.get('mean'))} -> "
                f"{_num(a.get('mean'))}, range [{_num(b.get('min'))}, {_num(b.get('max'))}] -> "
                f"[{_num(a.get('min'))}, {_num(a.get('max'))}])"
            )
    out.features.sort(key=lambda f: -(f["js"] or 0.0))


def _verdict(out: Validation, config: DriftConfig) -> Validation:
    if out.anomalies:
        out.status = "drift_accepted" if config.accept_drift else "stopped"
        out.reason = "; ".join(out.anomalies)
    return out


def check(result: Validation) -> None:
    """Raise :class:`DataValidationError` when ``result`` stops the run."""
    if result.status == "stopped":
        more = len(result.anomalies) - 3
        shown = "; ".join(result.anomalies[:3]) + (f"; and {more} more" if more > 0 else "")
        raise DataValidationError(
            f"data validation stopped the run: {shown}. Fix the data, or set accept_drift=true "
            "to train on it knowingly (or raise drift_linf_threshold / drift_js_threshold)"
        )


def _distribution(counts: list[int]) -> list[float]:
    total = sum(counts)
    return [round(c / total, 4) if total else 0.0 for c in counts]


def _label(ds: dict, k: int) -> str:
    names = ds.get("class_names") or []
    return f"{k} ({names[k]})" if k < len(names) else str(k)


def _seq(v):
    return v if isinstance(v, list | tuple) else [v]


def _show(v) -> str:
    return "x".join(map(str, v)) if isinstance(v, list | tuple) else str(v)


def _num(v) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"
