"""The gate's quality floor: beat the majority-class predictor clearly, min_accuracy, min_f1."""

import math

import numpy as np
import pytest

from tfopt.errors import ConfigError
from tfopt.evaluation import select as sel
from tfopt.evaluation.evaluate import classification_metrics
from tfopt.reporting import report


def rec(name, confusion, size=10_000, fmt="saved_model"):
    """A record whose accuracy / F1 are computed from ``confusion`` as evaluate does."""
    m = classification_metrics(np.asarray(confusion))
    return {
        "name": name,
        "format": fmt,
        "path": f"/m/{name}",
        "accuracy": m["accuracy"],
        "f1": m["f1"],
        "size_bytes": size,
        "gzip_bytes": size // 2,
        "latency_ms_p50": 0.1,
        "latency_ms_p95": 0.15,
        "latency_ms_p99": 0.2,
        "confusion_matrix": [list(map(int, row)) for row in confusion],
    }


def diag(support, correct):
    """A confusion matrix with ``correct[i]`` right answers in class i, the rest to class 0/1."""
    k = len(support)
    cm = np.zeros((k, k), dtype=int)
    for i, (s, c) in enumerate(zip(support, correct, strict=True)):
        cm[i, i] = c
        cm[i, (i + 1) % k] += s - c
    return cm


CHANCE_3 = [[10, 0, 0], [10, 0, 0], [10, 0, 0]]  # iris mlp: 33.33%, always class 0


def test_chance_level_baseline_blesses_nothing_and_says_so_first():
    good_student = rec("tiny", diag([10, 10, 10], [10, 10, 10]), size=10)
    s = sel.select_candidate(
        [rec("baseline", CHANCE_3), good_student], "baseline", sel.SelectionPolicy()
    )
    assert not s.blessed and s.selected is None
    assert s.reason.startswith("the baseline fails the quality floor")
    assert "33.33% does not clearly beat the majority-class predictor (33.33% on 30" in s.reason
    # the candidate is perfect but derives from a useless baseline: rejected as well
    assert s.reasons["tiny"] == ["the baseline fails the quality floor, so nothing is blessed"]
    assert s.floor["baseline_passes"] is False


def test_required_accuracy_is_three_standard_errors_above_the_majority_rate():
    support = [12, 9, 9]  # majority 40% of 30
    s = sel.select_candidate(
        [rec("baseline", diag(support, [12, 9, 9]))], "baseline", sel.SelectionPolicy()
    )
    p0 = 0.4
    assert s.floor["majority_accuracy"] == pytest.approx(p0)
    assert s.floor["majority_class"] == 0
    assert s.floor["required_accuracy"] == pytest.approx(p0 + 3 * math.sqrt(p0 * 0.6 / 30))
    # 20/30 = 66.7% is just below the 66.8% floor; 21/30 passes
    below = sel.select_candidate(
        [rec("baseline", diag(support, [12, 4, 4]))], "baseline", sel.SelectionPolicy()
    )
    above = sel.select_candidate(
        [rec("baseline", diag(support, [12, 5, 4]))], "baseline", sel.SelectionPolicy()
    )
    assert not below.blessed and "needs >= 66.83%" in below.reason
    assert above.blessed and above.selected == "baseline"


def test_imbalanced_data_majority_rate_is_the_bar_not_chance():
    # 90% of the test split is class 0: 90% accuracy is what predicting 0 gets
    s = sel.select_candidate(
        [rec("baseline", diag([900, 100], [880, 20]))], "baseline", sel.SelectionPolicy()
    )
    assert not s.blessed
    assert "majority-class predictor (90.00% on 1000 test examples" in s.reason


def test_good_baseline_is_blessed_and_a_useless_candidate_rejected():
    base = rec("baseline", diag([36] * 10, [35] * 10), size=100_000)  # 97.2%, digits-like
    broken = rec("tflite_int8", diag([36] * 10, [4] * 10), size=1_000, fmt="tflite")
    s = sel.select_candidate([base, broken], "baseline", sel.SelectionPolicy(max_accuracy_drop=100))
    assert s.blessed and s.selected == "baseline"
    assert any("does not clearly beat" in r for r in s.reasons["tflite_int8"])
    assert s.floor["baseline_passes"] is True


def test_min_accuracy_and_min_f1_are_hard_floors():
    base = rec("baseline", diag([50, 50], [45, 40]))  # 85%, F1 ~0.85
    s = sel.select_candidate([base], "baseline", sel.SelectionPolicy(min_accuracy=0.9))
    assert not s.blessed and "accuracy 85.00% < min_accuracy 90%" in s.reason
    s = sel.select_candidate([base], "baseline", sel.SelectionPolicy(min_f1=0.9))
    assert not s.blessed and "macro F1 0.850 < min_f1 0.9" in s.reason
    s = sel.select_candidate([base], "baseline", sel.SelectionPolicy(min_accuracy=0.8, min_f1=0.8))
    assert s.blessed


@pytest.mark.parametrize("field", ["min_accuracy", "min_f1"])
def test_floor_values_are_validated(field):
    with pytest.raises(ConfigError, match=rf"SelectionPolicy.{field}=1.5 is not allowed"):
        sel.SelectionPolicy(**{field: 1.5})


def test_summary_and_report_carry_the_floor():
    s = sel.select_candidate([rec("baseline", CHANCE_3)], "baseline", sel.SelectionPolicy())
    summary = sel.summarize("p", {"name": "iris", "num_test": 30}, "baseline", s)
    assert summary["quality_floor"]["majority_accuracy"] == pytest.approx(1 / 3)
    assert summary["blessed"] is False
    md = report.markdown_report(summary)
    lines = [line for line in md.splitlines() if line]
    assert "not blessed" in lines[1]
    assert lines[2].startswith("the baseline fails the quality floor")
    assert "the majority-class predictor scores 33.33% on 30 test examples" in md


def test_tflite_variants_under_tf_serving_are_labelled_edge_candidates():
    base = rec("baseline", diag([36] * 10, [35] * 10), size=100_000)
    lite = rec("tflite_int8", diag([36] * 10, [35] * 10), size=9_000, fmt="tflite")
    policy = sel.SelectionPolicy(deploy_target="tf_serving")
    s = sel.select_candidate([base, lite], "baseline", policy)
    assert s.selected == "baseline"
    md = report.markdown_report(sel.summarize("p", {}, "baseline", s))
    edge = md.split("## Edge candidates (TFLite)", 1)[1]
    assert "- `tflite_int8`: format tflite cannot be deployed to tf_serving" in edge
    assert "## Rejected" not in md
