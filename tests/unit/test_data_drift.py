"""validate-data's comparison (issue 34): L-infinity on the class distribution, Jensen-Shannon
on binned numeric features, the schema against the champion's, and when the run stops."""

import numpy as np
import pytest

from tfopt.data import drift, statistics
from tfopt.errors import ConfigError


def _record(x, y, num_classes=3, names=(), with_stats=True) -> dict:
    acc = statistics.DatasetStatistics()
    acc.add("train", x, y)
    shape = tuple(x.shape[1:])
    return {
        "dataset": {
            "name": "t",
            "feature_shape": list(shape),
            "feature_dtype": str(x.dtype),
            "num_classes": num_classes,
            "class_names": list(names),
        },
        "statistics": acc.result(shape, str(x.dtype), num_classes, None) if with_stats else None,
    }


RNG = np.random.default_rng(7)
X = RNG.integers(0, 17, (600, 4, 4, 1)).astype(np.float32)
Y = np.arange(600) % 3


def _feature(values, dtype=np.float32):
    acc = statistics.DatasetStatistics()
    acc.add("train", np.asarray(values, dtype).reshape(-1, 1, 1, 1), np.zeros(len(values), int))
    return acc.result((1, 1, 1), str(np.dtype(dtype)), 1, None)["splits"]["train"]["features"][0]


def test_distances():
    assert drift.linf_distance([50, 50], [50, 50]) == 0
    assert drift.linf_distance([10, 30], [30, 10, 0]) == pytest.approx(0.5)
    same = _feature(np.arange(100) % 9)
    assert drift.js_divergence(same, same) == 0
    assert drift.js_divergence(_feature([0, 1, 2] * 9), _feature([50, 60, 70] * 9)) == 1.0
    # grids of different widths (0..3 -> 1/16; 0..12 -> 1/4): re-binned onto the coarser exactly
    fine, coarse = _feature([0.0, 1.0, 2.0, 3.0] * 5), _feature([0.0, 1.0, 2.0, 3.0, 12.0] * 4)
    assert statistics.histogram_counts(fine)[1] < statistics.histogram_counts(coarse)[1]
    p, q = np.array([0.25] * 4 + [0.0]), np.array([0.2] * 5)
    m = (p + q) / 2
    kl = lambda a: np.sum(a[a > 0] * np.log2(a[a > 0] / m[a > 0]))  # noqa: E731
    assert drift.js_divergence(fine, coarse) == pytest.approx((kl(p) + kl(q)) / 2)


def test_the_same_data_passes_and_a_shifted_pixel_range_stops_the_run():
    champion = _record(X, Y)
    ok = drift.validate(_record(X[::-1].copy(), Y[::-1].copy()), champion)
    assert ok.status == "passed" and not ok.anomalies
    assert ok.classes["linf"] == 0 and ok.features[0]["js"] == 0
    shifted = drift.validate(_record(X * (255 / 16), Y), champion)
    assert shifted.status == "stopped"
    (f,) = shifted.features
    assert f["drift"] and f["js"] > 0.3 and f["mean"][1] > 10 * f["mean"][0]
    with pytest.raises(drift.DataValidationError, match=r"x\[\.\.\., 0\]: distribution drifted, "
                       r"Jensen-Shannon divergence 0\.\d+ > 0\.1"):  # fmt: skip
        drift.check(shifted)
    accepted = drift.validate(_record(X * 16, Y), champion, drift.DriftConfig(accept_drift=True))
    assert accepted.status == "drift_accepted" and accepted.anomalies
    drift.check(accepted)  # reported, not stopped


def test_a_disappeared_class_and_a_drifted_class_distribution_stop_the_run():
    champion = _record(X, Y)
    keep = Y != 2
    gone = drift.validate(_record(X[keep], Y[keep]), champion)
    assert gone.status == "stopped" and gone.classes["disappeared"] == [2]
    assert any("class(es) 2 disappeared" in a for a in gone.anomalies)
    assert any("class 2 has no train example" in w for w in gone.warnings)
    skew = np.concatenate([np.flatnonzero(Y == 0), np.flatnonzero(Y != 0)[:150]])
    skewed = drift.validate(_record(X[skew], Y[skew]), champion)
    assert skewed.classes["linf"] == pytest.approx(200 / 350 - 1 / 3, abs=1e-5)  # class 0
    assert any("L-infinity distance 0.2381 > 0.1" in a for a in skewed.anomalies)
    loose = drift.validate(_record(X[skew], Y[skew]), champion, drift.DriftConfig(0.5, 0.1))
    assert loose.status == "passed"


def test_a_champion_of_other_classes_or_inputs_is_not_comparable():
    champion = _record(X, Y, names=("a", "b", "c"))
    more = drift.validate(_record(X, Y, num_classes=4), champion)
    assert more.status == "stopped" and not more.champion_comparable
    assert "schema: 4 classes but the champion has 3" in more.anomalies
    renamed = drift.validate(_record(X, Y, names=("a", "c", "b")), champion)
    assert not renamed.champion_comparable
    assert any("1: 'c' was 'b'" in s for s in renamed.schema)
    bigger = drift.validate(_record(np.zeros((30, 5, 4, 1), np.float32), Y[:30]), champion)
    assert "input shape 5x4x1 but the champion's data had 4x4x1" in bigger.schema
    assert not bigger.champion_comparable
    accepted = drift.validate(
        _record(X, Y, num_classes=4), champion, drift.DriftConfig(accept_drift=True)
    )
    assert accepted.status == "drift_accepted" and not accepted.champion_comparable


def test_without_champion_statistics_only_the_schema_is_compared():
    older = _record(X, Y, with_stats=False)  # a model written before tfopt recorded its data
    out = drift.validate(_record(X * 16, Y), older)
    assert out.status == "not_checked" and "no data statistics" in out.reason
    assert not out.features and not out.classes
    first = drift.validate(_record(X, Y), None)
    assert first.status == "not_checked" and first.reason.startswith("no champion")


def test_drift_config_checks_itself():
    with pytest.raises(ConfigError, match=r"DriftConfig.drift_js_threshold=1.5"):
        drift.DriftConfig(drift_js_threshold=1.5)
    with pytest.raises(ConfigError, match="accept_drift"):
        drift.DriftConfig(accept_drift="yes")
