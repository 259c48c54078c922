"""IDX files (the MNIST-family format) and the built-in Fashion-MNIST.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the values in C
order. A source directory holds ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``); ``-`` or ``.``
before ``idx`` are both accepted, as distributions spell it both ways.
Images stream a chunk at a time as uint8; labels (one byte each) are read whole.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterator

import numpy as np

from tfopt.data import subset
from tfopt.data.readers import Chunk, rows_per_chunk
from tfopt.errors import DataError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "TFOPT_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_UBYTE = 0x08
_PREFIXES = {"train": "train", "test": "t10k"}


def _candidates(directory: str, prefix: str, kind: str, ndim: int) -> list[str]:
    return [
        os.path.join(directory, f"{prefix}-{kind}{sep}idx{ndim}-ubyte{gz}")
        for sep in ("-", ".")
        for gz in ("", ".gz")
    ]


def _find(directory: str, prefix: str, kind: str, ndim: int) -> str | None:
    for path in _candidates(directory, prefix, kind, ndim):
        if os.path.isfile(path):
            return path
    return None


def is_idx_dir(directory: str) -> bool:
    """Whether ``directory`` (local) holds an IDX training set."""
    return os.path.isdir(directory) and _find(directory, "train", "images", 3) is not None


def idx_files(directory: str) -> dict[str, tuple[str, str]]:
    """``{"train": (images, labels), "test": (...)}``; test is optional, train is not."""
    out = {}
    for split, prefix in _PREFIXES.items():
        images = _find(directory, prefix, "images", 3)
        labels = _find(directory, prefix, "labels", 1)
        if images is None and labels is None and split == "test":
            continue
        if images is None or labels is None:
            missing = "images" if images is None else "labels"
            ndim = 3 if missing == "images" else 1
            raise DataError(
                f"{directory}: found {prefix} {'labels' if images is None else 'images'} "
                f"but not {prefix}-{missing}-idx{ndim}-ubyte[.gz]"
            )
        out[split] = (images, labels)
    if "train" not in out:
        raise DataError(f"{directory}: no train-images-idx3-ubyte[.gz] file")
    return out


def fashion_mnist_dir() -> str:
    """The Fashion-MNIST directory: ``$TFOPT_FASHION_MNIST_DIR`` or where the Debian
    package ``dataset-fashion-mnist`` puts it."""
    directory = os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR
    if not is_idx_dir(directory):
        raise DataError(
            f"builtin:fashion_mnist: no Fashion-MNIST IDX files in {directory}. Install them "
            "with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set "
            f"{FASHION_MNIST_ENV} (or the source) to any directory holding "
            "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-*"
        )
    return directory


class _Reader:
    """An IDX file opened for streaming, with its header checked."""

    def __init__(self, path: str, ndim: int):
        self.path = path
        self.gz = path.endswith(".gz")
        self.fh = gzip.open(path, "rb") if self.gz else open(path, "rb")  # noqa: SIM115
        head = self.read(4, "the header")
        zero, dtype, dims = struct.unpack(">HBB", head)
        if zero != 0 or dtype != _UBYTE or dims != ndim:
            self.close()
            raise DataError(
                f"{path}: bad magic number 0x{head.hex()}; expected 0x000008{ndim:02x} "
                f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''})"
            )
        self.shape = struct.unpack(f">{ndim}I", self.read(4 * ndim, "the header"))
        if self.shape[0] == 0:
            self.close()
            raise DataError(f"{path}: holds no examples")

    def read(self, n: int, what: str) -> bytes:
        try:
            data = self.fh.read(n)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(
                f"{self.path}: file is truncated or corrupt in {what} ({exc})"
            ) from None
        if len(data) != n:
            raise DataError(
                f"{self.path}: file is truncated in {what} (expected {n} bytes, got {len(data)})"
            )
        return data

    def close(self) -> None:
        self.fh.close()


def read_labels(path: str) -> np.ndarray:
    r = _Reader(path, 1)
    try:
        y = np.frombuffer(r.read(r.shape[0], f"labels 0-{r.shape[0] - 1}"), np.uint8)
    finally:
        r.close()
    return y.astype(np.int64)


def read_idx_dir(
    directory: str,
    max_examples: int = 0,
    seed: int = 42,
) -> Iterator[Chunk]:
    """Stream an IDX directory: train (split into train/validation) and test kept as is.

    ``max_examples`` > 0 keeps a seeded subset stratified by class, shared
    between train and test in proportion to their sizes.
    """
    files = idx_files(directory)
    labels = {split: read_labels(label_file) for split, (_, label_file) in files.items()}
    keep = subset.split_subsets(labels, max_examples, seed)
    for split, (images_path, labels_path) in files.items():
        where = split if "test" in files else None  # no t10k files: split three ways
        yield from _stream_images(images_path, labels_path, labels[split], keep[split], where)


def _stream_images(images_path, labels_path, y, keep, split) -> Iterator[Chunk]:
    r = _Reader(images_path, 3)
    try:
        n, h, w = r.shape
        if n != len(y):
            raise DataError(
                f"{images_path}: holds {n} images but {labels_path} holds {len(y)} labels"
            )
        row = h * w
        step = rows_per_chunk(row)
        chunk_split = {"train": "trainval", "test": "test"}.get(split)
        for start in range(0, n, step):
            count = min(step, n - start)
            data = r.read(row * count, f"images {start}-{start + count - 1}")
            pos = np.arange(start, start + count)
            sel = keep[start : start + count] if keep is not None else slice(None)
            x = np.frombuffer(data, np.uint8).reshape(count, h, w, 1)[sel]
            if len(x):
                yield Chunk(
                    x, y[start : start + count][sel], images_path, "image", pos[sel], chunk_split
                )
    finally:
        r.close()
