"""The data of the scheduled scenario (issue 34): four runs into one serving repository.

Built from scikit-learn's bundled digits (no download). Every run keeps the same held-out
test examples (``x_test``: the ``.npz``'s own test split), so accuracies compare run to run:

1. ``clean``: half of the training pool, a stratified sample;
2. ``shuffled``: the same data with 30% of the labels (train and test) shuffled among
   themselves, as a broken upstream join would: class counts unchanged, so the schema and
   the class distribution allow it;
3. ``shifted``: the same data with the pixel range moved from 0..16 to 0..255 (an upstream
   change of scaling);
4. ``more``: the whole training pool, clean (twice the examples of run 1).
"""

from __future__ import annotations

import os

import numpy as np

RUNS = ("clean", "shuffled", "shifted", "more")
SHUFFLED_FRACTION = 0.3
SEED = 34


def _stratified(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        keep += rng.permutation(idx)[: round(len(idx) * fraction)].tolist()
    return np.sort(np.asarray(keep))


def _shuffle_labels(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    out = y.copy()
    picked = rng.choice(len(y), size=round(len(y) * fraction), replace=False)
    out[picked] = y[rng.permutation(picked)]
    return out


def write_runs(directory: str) -> dict[str, str]:
    """The four ``.npz`` sources (see the module docstring), by run name."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[..., np.newaxis]
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(SEED)
    test = _stratified(y, 0.2, rng)
    pool = np.setdiff1d(np.arange(len(y)), test)
    half = pool[_stratified(y[pool], 0.5, rng)]
    xt, yt = x[test], y[test]
    data = {
        "clean": (x[half], y[half], xt, yt),
        "shuffled": (
            x[half],
            _shuffle_labels(y[half], SHUFFLED_FRACTION, rng),
            xt,
            _shuffle_labels(yt, SHUFFLED_FRACTION, rng),
        ),
        "shifted": (x[half] * (255 / 16), y[half], xt * (255 / 16), yt),
        "more": (x[pool], y[pool], xt, yt),
    }
    os.makedirs(directory, exist_ok=True)
    out = {}
    for name, (a, b, c, d) in data.items():
        path = os.path.join(directory, f"digits_{name}.npz")
        np.savez(path, x_train=a, y_train=b, x_test=c, y_test=d)
        out[name] = path
    return out
