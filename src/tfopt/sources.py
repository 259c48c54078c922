"""Readers that stream examples from user data in bounded-size chunks.

Every reader yields ``Chunk`` objects (a few thousand rows at most), so
ingest never holds a whole source in memory. Readers check what they can
see locally (row shape, numeric values, NaN) and name the file and the row
or record in every error.
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tfopt.errors import DataError

CHUNK_ROWS = 4096


@dataclass
class Chunk:
    """A block of examples; ``split`` is set when the source fixes it (npz test)."""

    x: np.ndarray  # float32 [n, *shape]
    y: np.ndarray  # int64 [n]
    origin: str  # "file, rows a-b" for error messages
    split: str | None = None  # None: split 3 ways; "trainval": 2 ways; else fixed


def _open(path: str, mode: str = "rb"):
    if "://" in path:
        from tfopt._keras import tf

        return tf.io.gfile.GFile(path, mode)
    return open(path, mode)


def check_file(path: str) -> None:
    """Fail with a clear message when ``path`` is missing or empty."""
    if "://" in path:
        from tfopt._keras import tf

        if not tf.io.gfile.exists(path):
            raise DataError(f"{path}: file not found")
        size = tf.io.gfile.stat(path).length
    else:
        if not os.path.exists(path):
            raise DataError(f"{path}: file not found")
        size = os.path.getsize(path) if os.path.isfile(path) else 1
    if size == 0:
        raise DataError(f"{path}: file is empty")


def _as_float32(values: np.ndarray, origin: str) -> np.ndarray:
    if values.dtype.kind not in "biuf":
        raise DataError(f"{origin}: features have dtype {values.dtype}; expected numbers")
    out = values.astype(np.float32, copy=False)
    bad = ~np.isfinite(out)
    if bad.any():
        row = int(np.argwhere(bad.reshape(len(out), -1).any(axis=1))[0][0])
        raise DataError(f"{origin}: row {row} contains NaN or infinity")
    return out


def _as_labels(values: np.ndarray, origin: str) -> np.ndarray:
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise DataError(f"{origin}: labels must be whole numbers")
    elif values.dtype.kind not in "biu":
        raise DataError(f"{origin}: labels have dtype {values.dtype}; expected integers")
    labels = values.astype(np.int64).reshape(-1)
    if (labels < 0).any():
        row = int(np.argmax(labels < 0))
        raise DataError(f"{origin}: row {row} has negative label {labels[row]}")
    return labels


# --- built-in data ---------------------------------------------------------


def read_digits() -> Iterator[Chunk]:
    """scikit-learn's bundled 8x8 digits (1797 images, pixel values 0..16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[..., np.newaxis]
    yield Chunk(x, bunch.target.astype(np.int64), "builtin:digits")


def read_synthetic(num_examples: int, shape: tuple[int, ...], num_classes: int,
                   seed: int) -> Iterator[Chunk]:
    """A learnable, seeded image-classification task of any size.

    Each class has a random smooth prototype image; an example is its class
    prototype plus Gaussian noise, scaled to the digits' 0..16 range.
    """
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(num_classes, *shape)).astype(np.float32)
    for start in range(0, num_examples, CHUNK_ROWS):
        n = min(CHUNK_ROWS, num_examples - start)
        crng = np.random.default_rng((seed, start))
        y = crng.integers(0, num_classes, size=n, dtype=np.int64)
        noise = crng.normal(scale=1.2, size=(n, *shape)).astype(np.float32)
        x = np.clip((protos[y] + noise) * 4.0 + 8.0, 0.0, 16.0).astype(np.float32)
        yield Chunk(x, y, f"builtin:synthetic rows {start}-{start + n - 1}")


# --- .npz -------------------------------------------------------------------


def _npz_member_rows(zf: zipfile.ZipFile, name: str, path: str) -> tuple[tuple, np.dtype, object]:
    fh = zf.open(name)
    version = np.lib.format.read_magic(fh)
    shape, fortran, dtype = np.lib.format._read_array_header(fh, version)  # noqa: SLF001
    if fortran:
        raise DataError(f"{path}: array {name} is Fortran-ordered; save it C-ordered")
    if dtype.hasobject:
        raise DataError(f"{path}: array {name} holds Python objects; expected numbers")
    return shape, dtype, fh


def read_npz(path: str) -> Iterator[Chunk]:
    """Stream an ``.npz`` with ``x_train/y_train/x_test/y_test`` (or ``x/y``).

    Rows are read straight from the zip members, a chunk at a time, so the
    arrays are never loaded whole.
    """
    check_file(path)
    with _open(path) as raw:
        try:
            zf = zipfile.ZipFile(raw if "://" not in path else io.BytesIO(raw.read()))
        except zipfile.BadZipFile as exc:
            raise DataError(f"{path}: not a valid .npz file ({exc})") from None
        names = {n.removesuffix(".npy") for n in zf.namelist()}
        if {"x_train", "y_train", "x_test", "y_test"} <= names:
            pairs = [("x_train", "y_train", "trainval"), ("x_test", "y_test", "test")]
        elif {"x", "y"} <= names:
            pairs = [("x", "y", None)]
        else:
            raise DataError(f"{path}: expected arrays x_train, y_train, x_test, y_test "
                            f"(or x, y); found {', '.join(sorted(names)) or 'none'}")
        for xname, yname, split in pairs:
            yield from _stream_pair(zf, path, xname, yname, split)


def _stream_pair(zf, path, xname, yname, split) -> Iterator[Chunk]:
    xshape, xdtype, xfh = _npz_member_rows(zf, xname + ".npy", path)
    yshape, ydtype, yfh = _npz_member_rows(zf, yname + ".npy", path)
    if len(xshape) < 1 or xshape[0] != (yshape[0] if yshape else -1):
        raise DataError(f"{path}: {xname} has shape {xshape} but {yname} has shape "
                        f"{yshape}; the first dimensions must match")
    if xshape[0] == 0:
        raise DataError(f"{path}: {xname} is empty")
    row_shape = tuple(xshape[1:])
    if not row_shape:
        raise DataError(f"{path}: {xname} has shape {xshape}; expected one row per example")
    if len(row_shape) == 2:  # grey images: add the channel axis
        row_shape = (*row_shape, 1)
    xrow = int(np.prod(xshape[1:])) * xdtype.itemsize
    yrow = int(np.prod(yshape[1:], dtype=np.int64)) * ydtype.itemsize
    for start in range(0, xshape[0], CHUNK_ROWS):
        n = min(CHUNK_ROWS, xshape[0] - start)
        origin = f"{path}: {xname} rows {start}-{start + n - 1}"
        xb, yb = xfh.read(xrow * n), yfh.read(yrow * n)
        if len(xb) != xrow * n or len(yb) != yrow * n:
            raise DataError(f"{origin}: file is truncated")
        x = np.frombuffer(xb, dtype=xdtype).reshape((n, *row_shape))
        y = np.frombuffer(yb, dtype=ydtype)
        yield Chunk(_as_float32(x, origin), _as_labels(y, origin), origin, split)


# --- CSV --------------------------------------------------------------------


def read_csv(path: str, label_column: str, shape: tuple[int, ...] | None) -> Iterator[Chunk]:
    """Stream a CSV with a header row; ``label_column`` is the label, the rest features."""
    check_file(path)
    with _open(path, "r") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header:
            raise DataError(f"{path}: file has no header row")
        if label_column not in header:
            raise DataError(f"{path}: label column {label_column!r} not in header "
                            f"(columns: {', '.join(header[:10])}{' ...' if len(header) > 10 else ''})")
        li = header.index(label_column)
        nfeat = len(header) - 1
        row_shape = tuple(shape) if shape else (nfeat,)
        if int(np.prod(row_shape)) != nfeat:
            raise DataError(f"{path}: {nfeat} feature columns cannot be reshaped to {row_shape}")
        rows_x: list[list[str]] = []
        rows_y: list[str] = []
        first = 2  # line number of the first data row
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise DataError(f"{path}: line {lineno} has {len(row)} columns; "
                                f"the header has {len(header)}")
            rows_y.append(row[li])
            rows_x.append(row[:li] + row[li + 1:])
            if len(rows_x) == CHUNK_ROWS:
                yield _csv_chunk(path, first, rows_x, rows_y, row_shape)
                rows_x, rows_y, first = [], [], lineno + 1
        if rows_x:
            yield _csv_chunk(path, first, rows_x, rows_y, row_shape)


def _csv_chunk(path, first, rows_x, rows_y, row_shape) -> Chunk:
    origin = f"{path}: lines {first}-{first + len(rows_x) - 1}"
    try:
        x = np.asarray(rows_x, dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{origin}: a feature is not a number ({exc})") from None
    try:
        y = np.asarray(rows_y, dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{origin}: a label is not a number ({exc})") from None
    x = x.reshape((len(rows_x), *row_shape))
    return Chunk(_as_float32(x, origin), _as_labels(y, origin), origin)


# --- TFRecord ---------------------------------------------------------------


def read_tfrecords(files: list[str], feature: str, label: str,
                   shape: tuple[int, ...] | None) -> Iterator[Chunk]:
    """Stream ``tf.train.Example`` records: ``feature`` as float list or raw
    float32 bytes, ``label`` as int64. Corrupt records name file and record."""
    from tfopt._keras import tf

    for path in files:
        check_file(path)
        xs: list[np.ndarray] = []
        ys: list[int] = []
        index = -1
        try:
            for index, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
                x, y = _parse_example(record, feature, label, f"{path}: record {index}")
                xs.append(x)
                ys.append(y)
                if len(xs) == CHUNK_ROWS:
                    yield _record_chunk(path, index, xs, ys, shape)
                    xs, ys = [], []
        except tf.errors.DataLossError as exc:
            raise DataError(f"{path}: record {index + 1} is corrupt or truncated "
                            f"({exc.message.splitlines()[0]})") from None
        if xs:
            yield _record_chunk(path, index, xs, ys, shape)


def _parse_example(record: bytes, feature: str, label: str, origin: str):
    from tfopt._keras import tf

    ex = tf.train.Example.FromString(record)
    fmap = ex.features.feature
    if feature not in fmap or label not in fmap:
        raise DataError(f"{origin}: needs features {feature!r} and {label!r}; "
                        f"found {', '.join(sorted(fmap)) or 'none'}")
    f = fmap[feature]
    if f.HasField("float_list"):
        x = np.asarray(f.float_list.value, dtype=np.float32)
    elif f.HasField("bytes_list") and f.bytes_list.value:
        x = np.frombuffer(f.bytes_list.value[0], dtype=np.float32)
    elif f.HasField("int64_list"):
        x = np.asarray(f.int64_list.value, dtype=np.float32)
    else:
        raise DataError(f"{origin}: feature {feature!r} is empty")
    yl = fmap[label].int64_list.value
    if len(yl) != 1:
        raise DataError(f"{origin}: label {label!r} must be one int64 value")
    return x, int(yl[0])


def _record_chunk(path, last, xs, ys, shape) -> Chunk:
    origin = f"{path}: records {last - len(xs) + 1}-{last}"
    lengths = {len(x) for x in xs}
    if len(lengths) != 1:
        raise DataError(f"{origin}: records have different feature lengths {sorted(lengths)}")
    row_shape = tuple(shape) if shape else (lengths.pop(),)
    try:
        x = np.stack(xs).reshape((len(xs), *row_shape))
    except ValueError:
        raise DataError(f"{origin}: features of length {len(xs[0])} cannot be "
                        f"reshaped to {row_shape}") from None
    return Chunk(_as_float32(x, origin), _as_labels(np.asarray(ys), origin), origin)
