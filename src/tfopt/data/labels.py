"""Checks that labels are class ids of a classification task, with the file and row at fault.

tfopt trains classifiers. A regression target (house prices, disease
progression) read as integers would silently become hundreds of classes with a
few examples each; a stray label (7 in 3-class data) would silently add empty
classes. :class:`LabelTracker` sees every chunk ingest reads and, when the
number of classes is inferred, rejects both unless the user forces it.
"""

from __future__ import annotations

import numpy as np

from tfopt.errors import DataError

# Fewest examples per class on average before the target looks continuous.
# A stratified split needs a few per class in each of train / validation /
# test; fewer than 5 on average means most classes cannot appear in all three.
MIN_EXAMPLES_PER_CLASS = 5
_FORCE_HINT = (
    "pass num_classes if these really are class ids, or force_classification=true to train anyway"
)


class LabelTracker:
    """Counts labels across chunks and remembers where each label value was first seen."""

    def __init__(self) -> None:
        self.counts = np.zeros(0, np.int64)
        self.first_seen: dict[int, str] = {}

    def add(self, chunk) -> None:
        """Record the labels of a checked ``readers.Chunk`` (int64, >= 0)."""
        values, first = np.unique(chunk.y, return_index=True)
        for value, row in zip(values.tolist(), first.tolist(), strict=True):
            self.first_seen.setdefault(int(value), chunk.at(row))
        counts = np.bincount(chunk.y)
        size = max(len(counts), len(self.counts))
        self.counts = np.pad(self.counts, (0, size - len(self.counts))) + np.pad(
            counts, (0, size - len(counts))
        )

    def check(self, name: str, num_classes: int, force: bool) -> None:
        """Fail when inferred classes look like a continuous target or skip class ids.

        Args:
            name: the source, for messages.
            num_classes: the classes the user gave (0 = inferred: checked).
            force: the user insists on classification: nothing is checked.
        """
        if num_classes or force or not len(self.counts):
            return
        k, n = len(self.counts), int(self.counts.sum())
        if n < MIN_EXAMPLES_PER_CLASS * k:
            raise DataError(
                f"{name}: the label looks like a continuous target, not class ids: {n} "
                f"examples over {k} inferred classes ({n / k:.1f} per class, "
                f"{int((self.counts > 0).sum())} distinct values; tfopt needs at least "
                f"{MIN_EXAMPLES_PER_CLASS} per class on average). tfopt trains classifiers; "
                + _FORCE_HINT
            )
        missing = np.flatnonzero(self.counts == 0).tolist()
        if missing:
            above = [v for v in sorted(self.first_seen) if v > missing[0]]
            shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
            raise DataError(
                f"{self.first_seen[above[-1]]}: label {above[-1]} makes {k} classes, but no "
                f"example has class {shown}: a label outside the intended classes? " + _FORCE_HINT
            )
