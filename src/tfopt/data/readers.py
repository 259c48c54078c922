"""Readers that stream examples from user data in bounded-size chunks.

Every reader yields ``Chunk`` objects (at most ``CHUNK_ROWS`` rows and about
``CHUNK_BYTES`` of features), so ingest never holds a whole source in memory.
Readers check what they can see locally (row shape, numeric values, NaN,
negative labels) and name the file and the line, row or record in every
error. Paths with a scheme (``gs://``, ``file://``) go through ``tf.io.gfile``.

Over 400 lines on purpose: one streaming reader per source format (npz, CSV, TFRecord,
built-ins) behind one Chunk interface; each is short and they share the chunking helpers.
"""

from __future__ import annotations

import csv
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tfopt.errors import DataError

CHUNK_ROWS = 4096
CHUNK_BYTES = 32 << 20


def rows_per_chunk(row_bytes: int) -> int:
    """Rows in one chunk for examples of ``row_bytes`` bytes (at least 1)."""
    return max(1, min(CHUNK_ROWS, CHUNK_BYTES // max(row_bytes, 1)))


@dataclass
class Chunk:
    """A block of examples read from one place.

    Attributes:
        x: float32 ``[n, *shape]``.
        y: int64 ``[n]``.
        path: the file (or built-in name) the rows come from.
        unit: what a position counts, e.g. ``line``, ``record``, ``x_train row``.
        positions: the position of each row in ``path`` (same length as ``y``).
        split: ``None`` (split three ways), ``"trainval"`` (the source has its
            own test split; split two ways) or a split name (kept as is).
    """

    x: np.ndarray
    y: np.ndarray
    path: str
    unit: str
    positions: np.ndarray
    split: str | None = None

    def at(self, row: int) -> str:
        """Where row ``row`` of this chunk came from, for error messages."""
        return f"{self.path}: {self.unit} {int(self.positions[row])}"

    @property
    def origin(self) -> str:
        return f"{self.path}: {self.unit}s {int(self.positions[0])}-{int(self.positions[-1])}"


def _gfile():
    from tfopt._keras import tf

    return tf.io.gfile


def _open(path: str, mode: str = "rb"):
    return _gfile().GFile(path, mode) if "://" in path else open(path, mode)


def check_file(path: str) -> None:
    """Fail with a clear message when ``path`` is missing or empty."""
    if "://" in path:
        gf = _gfile()
        if not gf.exists(path):
            raise DataError(f"{path}: file not found")
        size = 1 if gf.isdir(path) else gf.stat(path).length
    else:
        if not os.path.exists(path):
            raise DataError(f"{path}: file not found")
        size = os.path.getsize(path) if os.path.isfile(path) else 1
    if size == 0:
        raise DataError(f"{path}: file is empty")


def make_chunk(
    x: np.ndarray, y: np.ndarray, path: str, unit: str, positions, split: str | None = None
) -> Chunk:
    """Check features (numbers, finite) and labels (whole, >= 0) and build a Chunk.

    uint8 features (images) stay uint8, a quarter of the bytes; others become float32.
    """
    chunk = Chunk(x, y, path, unit, np.asarray(positions), split)
    if x.dtype.kind not in "biuf":
        raise DataError(f"{chunk.origin}: features have dtype {x.dtype}; expected numbers")
    chunk.x = x if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
    if chunk.x.dtype == np.float32:
        bad = ~np.isfinite(chunk.x.reshape(len(chunk.x), -1)).all(axis=1)
        if bad.any():
            raise DataError(f"{chunk.at(int(np.argmax(bad)))}: features contain NaN or infinity")
    if y.dtype.kind == "f":
        whole = np.isfinite(y) & (y == np.round(y))
        if not whole.all():
            row = int(np.argmax(~whole))
            raise DataError(f"{chunk.at(row)}: label {float(y[row])} is not a whole number")
    elif y.dtype.kind not in "biu":
        raise DataError(f"{chunk.origin}: labels have dtype {y.dtype}; expected integers")
    chunk.y = y.astype(np.int64).reshape(-1)
    if (chunk.y < 0).any():
        row = int(np.argmax(chunk.y < 0))
        raise DataError(
            f"{chunk.at(row)}: label {chunk.y[row]} is negative; labels must be in [0, num_classes)"
        )
    return chunk


# --- built-in data ---------------------------------------------------------


def read_digits() -> Iterator[Chunk]:
    """scikit-learn's bundled 8x8 digits (1797 images, pixel values 0..16)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[..., np.newaxis]
    yield make_chunk(x, bunch.target.astype(np.int64), "builtin:digits", "row", np.arange(len(x)))


def read_synthetic(
    num_examples: int, shape: tuple[int, ...], num_classes: int, seed: int
) -> Iterator[Chunk]:
    """A learnable, seeded image-classification task of any size.

    Each class has a random prototype image; an example is its class
    prototype plus Gaussian noise, scaled and clipped to the digits' 0..16
    range. Chunks are generated independently, so memory stays bounded.
    """
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(num_classes, *shape)).astype(np.float32)
    step = rows_per_chunk(int(np.prod(shape)) * 4)
    for start in range(0, num_examples, step):
        n = min(step, num_examples - start)
        crng = np.random.default_rng((seed, start))
        y = crng.integers(0, num_classes, size=n, dtype=np.int64)
        noise = crng.normal(scale=1.2, size=(n, *shape)).astype(np.float32)
        x = np.clip((protos[y] + noise) * 4.0 + 8.0, 0.0, 16.0).astype(np.float32)
        yield Chunk(x, y, "builtin:synthetic", "row", np.arange(start, start + n))


# --- .npz -------------------------------------------------------------------


def _npz_member(zf: zipfile.ZipFile, name: str, path: str):
    fh = zf.open(name)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:  # 3.0 (utf-8 field names) has no public reader
            from numpy.lib import _format_impl

            # private: no stub names it
            shape, fortran, dtype = _format_impl._read_array_header(fh, version)  # type: ignore[attr-defined]
    except ValueError as exc:
        raise DataError(f"{path}: array {name} is not a valid .npy member ({exc})") from None
    if fortran and len(shape) > 1:
        raise DataError(f"{path}: array {name} is Fortran-ordered; save it C-ordered")
    if dtype.hasobject:
        raise DataError(f"{path}: array {name} holds Python objects; expected numbers")
    return shape, dtype, fh


def read_npz(path: str) -> Iterator[Chunk]:
    """Stream an ``.npz`` with ``x_train/y_train/x_test/y_test`` (or ``x/y``).

    Rows are read straight from the zip members (stored or deflated), a
    chunk at a time, so the arrays are never loaded whole; ``gs://`` files
    are read with seeks through ``tf.io.gfile``, not downloaded whole.
    """
    check_file(path)
    with _open(path) as raw:
        try:
            zf = zipfile.ZipFile(raw)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{path}: not a valid .npz file ({exc})") from None
        names = {n.removesuffix(".npy") for n in zf.namelist()}
        if {"x_train", "y_train", "x_test", "y_test"} <= names:
            pairs: list[tuple[str, str, str | None]] = [
                ("x_train", "y_train", "trainval"),
                ("x_test", "y_test", "test"),
            ]
        elif {"x", "y"} <= names:
            pairs = [("x", "y", None)]
        else:
            raise DataError(
                f"{path}: expected arrays x_train, y_train, x_test, y_test "
                f"(or x, y); found {', '.join(sorted(names)) or 'none'}"
            )
        for xname, yname, split in pairs:
            yield from _stream_pair(zf, path, xname, yname, split)


def _stream_pair(zf, path, xname, yname, split) -> Iterator[Chunk]:
    xshape, xdtype, xfh = _npz_member(zf, xname + ".npy", path)
    yshape, ydtype, yfh = _npz_member(zf, yname + ".npy", path)
    if len(xshape) < 2:
        raise DataError(
            f"{path}: {xname} has shape {xshape}; expected one row per example "
            "(at least 2 dimensions)"
        )
    if len(yshape) not in (1, 2) or (len(yshape) == 2 and yshape[1] != 1):
        raise DataError(
            f"{path}: {yname} has shape {yshape}; expected one integer label "
            "per example (shape [n] or [n, 1])"
        )
    if xshape[0] != yshape[0]:
        raise DataError(f"{path}: {xname} has {xshape[0]} rows but {yname} has {yshape[0]}")
    if xshape[0] == 0:
        raise DataError(f"{path}: {xname} is empty")
    row_shape = tuple(xshape[1:])
    if len(row_shape) == 2:  # grey images: add the channel axis
        row_shape = (*row_shape, 1)
    xrow = int(np.prod(xshape[1:])) * xdtype.itemsize
    step = rows_per_chunk(int(np.prod(row_shape)) * 4)
    for start in range(0, xshape[0], step):
        n = min(step, xshape[0] - start)
        xb, yb = xfh.read(xrow * n), yfh.read(ydtype.itemsize * n)
        if len(xb) != xrow * n or len(yb) != ydtype.itemsize * n:
            raise DataError(
                f"{path}: {xname}/{yname} rows {start}-{start + n - 1}: file is truncated"
            )
        x = np.frombuffer(xb, dtype=xdtype).reshape((n, *row_shape))
        y = np.frombuffer(yb, dtype=ydtype)
        yield make_chunk(x, y, path, f"{xname} row", np.arange(start, start + n), split)


# --- CSV --------------------------------------------------------------------


def read_csv(path: str, label_column: str, shape: tuple[int, ...] | None) -> Iterator[Chunk]:
    """Stream a CSV with a header row; ``label_column`` is the label, the rest features.

    One example per line. A block of lines is parsed at once with
    ``np.loadtxt`` (C speed); a block that fails is re-read line by line to
    name the line and the problem.
    """
    check_file(path)
    with _open(path, "r") as fh:
        header_line = fh.readline()
        header = next(csv.reader([header_line]), None)
        if not header or not any(h.strip() for h in header):
            raise DataError(f"{path}: file has no header row")
        header = [h.strip() for h in header]
        if label_column not in header:
            raise DataError(
                f"{path}: label column {label_column!r} not in header "
                f"(columns: {', '.join(header[:10])}{' ...' if len(header) > 10 else ''})"
            )
        li = header.index(label_column)
        nfeat = len(header) - 1
        if nfeat < 1:
            raise DataError(f"{path}: the header has no feature columns besides {label_column!r}")
        row_shape = tuple(shape) if shape else (nfeat,)
        if int(np.prod(row_shape)) != nfeat:
            raise DataError(f"{path}: {nfeat} feature columns cannot be reshaped to {row_shape}")
        step = rows_per_chunk(nfeat * 4)
        lines: list[str] = []
        numbers: list[int] = []
        for lineno, line in enumerate(fh, start=2):
            if not line.strip():
                continue
            lines.append(line)
            numbers.append(lineno)
            if len(lines) == step:
                yield _csv_chunk(path, header, li, lines, numbers, row_shape)
                lines, numbers = [], []
        if lines:
            yield _csv_chunk(path, header, li, lines, numbers, row_shape)


def _csv_chunk(path, header, li, lines, numbers, row_shape) -> Chunk:
    try:
        values = np.loadtxt(
            lines, delimiter=",", quotechar='"', dtype=np.float64, ndmin=2, comments=None
        )
        if values.shape[1] != len(header):
            raise ValueError("wrong number of columns")
    except ValueError:
        _csv_find_error(path, header, li, lines, numbers)
        raise  # _csv_find_error always raises; this keeps linters calm
    y = values[:, li]
    x = np.delete(values, li, axis=1).reshape((len(lines), *row_shape))
    return make_chunk(x, y, path, "line", numbers)


def _csv_find_error(path, header, li, lines, numbers) -> None:
    for lineno, row in zip(numbers, csv.reader(lines), strict=False):
        if len(row) != len(header):
            raise DataError(
                f"{path}: line {lineno} has {len(row)} columns; the header has {len(header)}"
            )
        for col, value in zip(header, row, strict=True):
            try:
                float(value)
            except ValueError:
                what = "label" if col == header[li] else "feature"
                raise DataError(
                    f"{path}: line {lineno}: {what} column {col!r} has "
                    f"{value!r}, which is not a number"
                ) from None
    raise DataError(
        f"{path}: lines {numbers[0]}-{numbers[-1]} cannot be parsed as numbers "
        "(quoted fields spanning lines are not supported)"
    )


# --- TFRecord ---------------------------------------------------------------

_SHARD_RE = re.compile(r"^(?P<stem>.*)-(?P<index>\d+)-of-(?P<total>\d+)(?P<suffix>[^/]*)$")


def check_shard_set(files: list[str]) -> None:
    """Fail when files named ``<stem>-NNNNN-of-MMMMM`` do not form complete sets."""
    sets: dict[tuple[str, str, int], set[int]] = {}
    for f in files:
        m = _SHARD_RE.match(f)
        if m:
            key = (m["stem"], m["suffix"], int(m["total"]))
            sets.setdefault(key, set()).add(int(m["index"]))
    for (stem, suffix, total), seen in sets.items():
        missing = sorted(set(range(total)) - seen)
        if missing:
            width = max(5, len(str(total)))
            names = ", ".join(
                f"{os.path.basename(stem)}-{i:0{width}d}-of-{total:0{width}d}{suffix}"
                for i in missing[:5]
            )
            raise DataError(
                f"{stem}-*-of-{total:0{width}d}{suffix}: shard set of {total} is "
                f"incomplete; missing {names}{' ...' if len(missing) > 5 else ''}"
            )


def read_tfrecords(
    files: list[str],
    feature: str,
    label: str,
    shape: tuple[int, ...] | None,
    raw_dtype: str = "float32",
) -> Iterator[Chunk]:
    """Stream ``tf.train.Example`` records: ``feature`` as float list, int64 list or
    raw ``raw_dtype`` bytes (float32, or uint8 for a tfopt image dataset), ``label``
    as int64. Corrupt records name file and record."""
    from tfopt._keras import tf

    check_shard_set(files)
    length = None
    for path in files:
        check_file(path)
        xs: list[np.ndarray] = []
        ys: list[int] = []
        first = 0
        index = -1
        step = CHUNK_ROWS
        try:
            for index, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
                where = f"{path}: record {index}"
                x, y = _parse_example(record, feature, label, where, raw_dtype)
                if length is None:
                    length = len(x)
                    step = rows_per_chunk(length * 4)
                elif len(x) != length:
                    raise DataError(
                        f"{where}: feature {feature!r} has {len(x)} values; "
                        f"earlier records have {length}"
                    )
                xs.append(x)
                ys.append(y)
                if len(xs) == step:
                    yield _record_chunk(path, first, xs, ys, shape)
                    xs, ys, first = [], [], index + 1
        except tf.errors.DataLossError as exc:
            raise DataError(
                f"{path}: record {index + 1} is corrupt or truncated "
                f"({exc.message.splitlines()[0]})"
            ) from None
        if xs:
            yield _record_chunk(path, first, xs, ys, shape)


def _parse_example(record: bytes, feature: str, label: str, where: str, raw_dtype="float32"):
    from tfopt._keras import tf

    try:
        ex = tf.train.Example.FromString(record)
    except Exception:  # protobuf's DecodeError
        raise DataError(f"{where}: not a tf.train.Example") from None
    fmap = ex.features.feature
    if feature not in fmap or label not in fmap:
        raise DataError(
            f"{where}: needs features {feature!r} and {label!r}; "
            f"found {', '.join(sorted(fmap)) or 'none'}"
        )
    f = fmap[feature]
    kind = f.WhichOneof("kind")
    if kind == "float_list":
        x = np.asarray(f.float_list.value, dtype=np.float32)
    elif kind == "bytes_list" and len(f.bytes_list.value) == 1:
        raw = f.bytes_list.value[0]
        if raw_dtype == "uint8":
            return np.frombuffer(raw, dtype=np.uint8), _label(fmap, label, where)
        if len(raw) % 4:
            raise DataError(
                f"{where}: feature {feature!r} has {len(raw)} bytes; raw float32 "
                "needs a multiple of 4"
            )
        x = np.frombuffer(raw, dtype=np.float32)
    elif kind == "int64_list":
        x = np.asarray(f.int64_list.value, dtype=np.float32)
    else:
        raise DataError(f"{where}: feature {feature!r} is empty or not numeric")
    return x, _label(fmap, label, where)


def _label(fmap, label: str, where: str) -> int:
    if fmap[label].WhichOneof("kind") != "int64_list" or len(fmap[label].int64_list.value) != 1:
        raise DataError(f"{where}: label {label!r} must be one int64 value")
    return int(fmap[label].int64_list.value[0])


def _record_chunk(path, first, xs, ys, shape) -> Chunk:
    row_shape = tuple(shape) if shape else (len(xs[0]),)
    if int(np.prod(row_shape)) != len(xs[0]):
        raise DataError(
            f"{path}: record {first}: feature of {len(xs[0])} values cannot be "
            f"reshaped to {row_shape}"
        )
    x = np.stack(xs).reshape((len(xs), *row_shape))
    return make_chunk(
        x, np.asarray(ys, dtype=np.int64), path, "record", np.arange(first, first + len(xs))
    )
