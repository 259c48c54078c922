"""Accuracy decisions that see the noise (issue 32, item 3): McNemar on the same examples."""

import numpy as np
import pytest

from tfopt.compression import tflite as tflite_lib
from tfopt.evaluation import noise


def test_mcnemar_exact_p_values():
    assert noise.mcnemar_p(0, 0) == 1.0
    assert noise.mcnemar_p(5, 0) == pytest.approx(2 * 0.5**5)  # 0.0625: not significant
    assert noise.mcnemar_p(6, 0) == pytest.approx(2 * 0.5**6)  # 0.03125: significant
    assert noise.mcnemar_p(3, 3) == 1.0
    assert noise.mcnemar_p(10, 2) == pytest.approx(2 * sum(
        __import__("math").comb(12, k) for k in range(3)) / 2**12)  # fmt: skip


def test_the_measured_flip_is_within_noise():
    """issue 32: int8 lost 1.66 points on 301 validation examples, 5 examples net."""
    y = np.zeros(301, dtype=int)
    reference = y.copy()
    candidate = y.copy()
    candidate[:5] = 1  # 5 the reference got right, the candidate wrong; none the other way
    drop = noise.paired_drop(y, reference, candidate)
    assert (drop.only_reference, drop.only_candidate, drop.n) == (5, 0, 301)
    assert drop.drop_points == pytest.approx(500 / 301)
    assert drop.within_noise and not drop.exceeds(1.0)
    assert "within noise" in drop.describe() and "5 of 301 examples" in drop.describe()
    candidate[:8] = 1  # 8 net: now a real drop above a 1-point budget
    assert noise.paired_drop(y, reference, candidate).exceeds(1.0)


def test_disagreements_both_ways_cancel():
    y = np.arange(100) % 10
    reference, candidate = y.copy(), y.copy()
    reference[:10] = (y[:10] + 1) % 10  # the reference misses 10
    candidate[10:22] = (y[10:22] + 1) % 10  # the candidate misses 12 others
    drop = noise.paired_drop(y, reference, candidate)
    assert (drop.only_reference, drop.only_candidate) == (12, 10)
    assert drop.drop_points == pytest.approx(2.0) and drop.within_noise


def test_examples_needed_for_a_budget():
    # 6 disagreements one way are the fewest that are significant: 6 per budget point
    assert noise.examples_needed(1.0) == 600
    assert noise.examples_needed(2.0) == 300


@pytest.mark.slow
def test_int8_notes_say_how_the_drop_was_judged(tmp_path, cnn, digits_dir):
    out = str(tmp_path / "i8.tflite")
    result = tflite_lib.convert_to_tflite(
        cnn, digits_dir, out, tflite_lib.TFLiteConfig(mode="int8", representative_samples=50)
    )
    judged = [n for n in result.notes if n.startswith("int8 accuracy")]
    assert judged and "McNemar" in judged[0] and "examples" in judged[0]
