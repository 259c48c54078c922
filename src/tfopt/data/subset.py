"""Seeded subsets stratified by class, for quick runs on large sources (``max_examples``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

import numpy as np

K = TypeVar("K")  # a split name (None for a source without splits)


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` summing to ``total`` (each at most its weight)."""
    exact = weights / weights.sum() * total
    out = np.minimum(np.floor(exact).astype(np.int64), weights)
    rest = total - int(out.sum())
    order = np.argsort(-(exact - out), kind="stable")
    for i in order:
        if rest <= 0:
            break
        if out[i] < weights[i]:
            out[i] += 1
            rest -= 1
    return out


def stratified_mask(labels: np.ndarray, n: int, seed) -> np.ndarray:
    """A boolean mask keeping ``n`` of ``labels``, each class in proportion (at least
    one of each class when ``n`` allows), chosen with a seeded permutation."""
    labels = np.asarray(labels)
    mask = np.zeros(len(labels), dtype=bool)
    if n >= len(labels):
        mask[:] = True
        return mask
    classes, counts = np.unique(labels, return_counts=True)
    take = _largest_remainder(counts, n)
    if n >= len(classes):  # keep every class present
        for i in np.flatnonzero(take == 0):
            donor = int(np.argmax(take))
            take[donor] -= 1
            take[i] = 1
    rng = np.random.default_rng(seed)
    for c, k in zip(classes.tolist(), take.tolist(), strict=True):
        idx = np.flatnonzero(labels == c)
        mask[rng.permutation(idx)[:k]] = True
    return mask


def split_subsets(
    labels: Mapping[K, np.ndarray], max_examples: int, seed: int
) -> dict[K, np.ndarray | None]:
    """Masks per source split: ``max_examples`` shared in proportion to the splits'
    sizes, stratified within each; ``None`` everywhere when 0 or not smaller."""
    total = sum(len(y) for y in labels.values())
    if not max_examples or max_examples >= total:
        return dict.fromkeys(labels)
    names = list(labels)
    shares = _largest_remainder(np.asarray([len(labels[s]) for s in names]), max_examples)
    return {
        s: stratified_mask(labels[s], int(k), (seed, i))
        for i, (s, k) in enumerate(zip(names, shares.tolist(), strict=True))
    }
