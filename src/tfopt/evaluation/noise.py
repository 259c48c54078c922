"""Accuracy decisions that see the noise: a candidate against its reference, on the same examples.

Two models scored on the same n examples differ only where they disagree: ``b`` examples
the reference gets right and the candidate wrong, ``c`` the other way. McNemar's exact
test asks whether b against c is more lopsided than a fair coin would make it; when it
is not (p >= ``ALPHA``), the measured drop is noise and is not treated as a drop. Measured
before this (issue 32): a 1.66-point int8 drop on 301 validation examples (5 examples)
started a selective fallback that made the file 2.5x larger, and the next run of the same
commit did not: the size flipped on noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ALPHA = 0.05  # two-sided: a drop is real when chance would make it this lopsided < 5% of runs


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value for ``b`` and ``c`` discordant examples."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2.0**n
    return min(1.0, 2.0 * tail)


@dataclass(frozen=True)
class PairedDrop:
    """A candidate's accuracy against its reference on the same ``n`` examples.

    Attributes:
        n: examples scored.
        only_reference: examples the reference gets right and the candidate wrong (b).
        only_candidate: the other way (c).
        drop_points: accuracy points lost, (b - c) / n * 100.
        p_value: McNemar's exact two-sided p-value of b against c.
    """

    n: int
    only_reference: int
    only_candidate: int
    drop_points: float
    p_value: float

    @property
    def within_noise(self) -> bool:
        return self.p_value >= ALPHA

    def exceeds(self, budget_points: float) -> bool:
        """A real drop (not noise) larger than ``budget_points``."""
        return self.drop_points > budget_points + 1e-9 and not self.within_noise

    def describe(self) -> str:
        net = self.only_reference - self.only_candidate
        text = f"drop {self.drop_points:.2f} points ({net} of {self.n} examples"
        if self.within_noise:
            return f"{text}, within noise: McNemar p={self.p_value:.2f})"
        return f"{text}, McNemar p={self.p_value:.3f})"


def paired_drop(y: np.ndarray, reference: np.ndarray, candidate: np.ndarray) -> PairedDrop:
    """Compare predicted classes ``candidate`` with ``reference`` on labels ``y``."""
    y, reference, candidate = (np.asarray(a).reshape(-1) for a in (y, reference, candidate))
    ref_ok, cand_ok = reference == y, candidate == y
    b = int(np.sum(ref_ok & ~cand_ok))
    c = int(np.sum(cand_ok & ~ref_ok))
    n = len(y)
    return PairedDrop(n, b, c, (b - c) / max(n, 1) * 100.0, mcnemar_p(b, c))


def examples_needed(budget_points: float) -> int:
    """The fewest examples on which a drop of ``budget_points`` can be told from noise:
    the smallest k with every one of k disagreements one way significant, over the budget."""
    k = 1
    while mcnemar_p(k, 0) >= ALPHA:
        k += 1
    return math.ceil(k * 100.0 / budget_points) if budget_points > 0 else 0
