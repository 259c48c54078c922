"""Ingest: any source -> sharded TFRecords + ``schema.json``.

Ingest streams: memory stays bounded by the shuffle window and chunk size
whatever the size of the source. Splits are seeded and stratified per class.

Over 400 lines on purpose: the split assignment, shard writers and schema writing form
one streaming pass whose parts share its state and its atomic output directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfopt import fsutil
from tfopt.checks import check_choice, check_float, check_int, check_str
from tfopt.data import idx, images, labels, readers, subset
from tfopt.data.codec import ExampleEncoder
from tfopt.data.schema import (
    FEATURE_KEY,
    LABEL_KEY,
    SCHEMA_FILE,
    SCHEMA_FORMAT,
    SPLITS,
    DatasetInfo,
    write_schema,
)
from tfopt.errors import ConfigError, DataError

log = logging.getLogger(__name__)


_BLOCK = 20  # stratification block: each class is split in blocks of 20 examples
_GROUP = 256  # blocks whose slot permutations are drawn together


@dataclass(frozen=True)
class IngestConfig:
    """What to read and how to split it.

    Attributes:
        source: ``builtin:digits``, ``builtin:synthetic``, a ``.npz`` / ``.csv`` file,
            or TFRecord file(s) (a file, a directory or a glob); local or ``gs://``.
        label_column: label column (CSV) or int64 feature (TFRecord).
        feature_column: feature of foreign TFRecords (float list or raw float32 bytes).
        feature_shape: shape of one example when the source cannot tell (CSV, TFRecord).
        num_classes: number of classes; inferred as ``max(label) + 1`` when 0.
        validation_fraction / test_fraction: split sizes; a source with its own
            test split (``x_test`` in an ``.npz``) keeps it.
        seed: seeds the split assignment and the within-window shuffle.
        shard_size: examples per TFRecord shard.
        shuffle_window: examples shuffled together before writing (bounds memory).
        buffer_bytes: caps the shuffle window of each split in bytes of features,
            so large examples (images) keep memory bounded too.
        synthetic_examples / synthetic_shape / synthetic_classes: ``builtin:synthetic``.
        max_examples: > 0 keeps a seeded subset of this many examples, stratified by
            class (image folders, IDX directories, ``builtin:fashion_mnist``, ``builtin:digits``).
        image_size: ``(height, width)`` images are resized to at ingest (image folders);
            () keeps their size, which they must then share.
        channels: 1 (grey) or 3 (RGB) for image folders; 0 picks 3 when any image has colour.
        skip_corrupt_images: skip (and count in ``schema.json``) unreadable images
            instead of failing on the first one.
        force_classification: accept inferred labels that look like a continuous
            target or skip class ids (see ``tfopt.data.labels``).
    """

    source: str = "builtin:digits"
    label_column: str = LABEL_KEY
    feature_column: str = FEATURE_KEY
    feature_shape: tuple[int, ...] = ()
    num_classes: int = 0
    validation_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 42
    shard_size: int = 50_000
    shuffle_window: int = 20_000
    buffer_bytes: int = 256 << 20
    synthetic_examples: int = 1797
    synthetic_shape: tuple[int, ...] = (8, 8, 1)
    synthetic_classes: int = 10
    max_examples: int = 0
    image_size: tuple[int, ...] = ()
    channels: int = 0
    skip_corrupt_images: bool = False
    force_classification: bool = False

    def __post_init__(self):
        name = "IngestConfig"
        check_str(name, "source", self.source)
        check_str(name, "label_column", self.label_column)
        check_str(name, "feature_column", self.feature_column)
        object.__setattr__(self, "feature_shape", tuple(self.feature_shape))
        object.__setattr__(self, "synthetic_shape", tuple(self.synthetic_shape))
        for fname in ("feature_shape", "synthetic_shape"):
            dims = getattr(self, fname)
            if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
                raise ConfigError(
                    f"{name}.{fname}={dims!r} is not allowed: expected positive integer dimensions"
                )
        check_int(name, "num_classes", self.num_classes, 0, 100_000)
        check_float(name, "validation_fraction", self.validation_fraction, 0.0, 0.5)
        check_float(name, "test_fraction", self.test_fraction, 0.0, 0.5)
        check_int(name, "seed", self.seed, 0, 2**31 - 1)
        check_int(name, "shard_size", self.shard_size, 1, 10_000_000)
        check_int(name, "shuffle_window", self.shuffle_window, 1, 10_000_000)
        check_int(name, "buffer_bytes", self.buffer_bytes, 1 << 10, 1 << 40)
        check_int(name, "synthetic_examples", self.synthetic_examples, 10, 1_000_000_000)
        check_int(name, "synthetic_classes", self.synthetic_classes, 2, 10_000)
        if not self.synthetic_shape:
            raise ConfigError(f"{name}.synthetic_shape=() is not allowed: expected dimensions")
        check_int(name, "max_examples", self.max_examples, 0, 1_000_000_000)
        object.__setattr__(self, "image_size", tuple(self.image_size))
        if self.image_size and (
            len(self.image_size) != 2
            or any(
                isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 8192
                for d in self.image_size
            )
        ):
            raise ConfigError(
                f"{name}.image_size={self.image_size!r} is not allowed: expected () or "
                "(height, width) with each in [1, 8192]"
            )
        check_choice(name, "channels", self.channels, (0, 1, 3))


# --- ingest -------------------------------------------------------------------


def ingest(output_dir: str, config: IngestConfig = IngestConfig()) -> DatasetInfo:
    """Read ``config.source``, split it and write the dataset artifact to ``output_dir``.

    The directory appears only when everything was read, checked and written.
    """
    meta: dict = {}
    chunks = _read_source(config, meta)
    with fsutil.atomic_dir(output_dir) as tmp:
        writer = _SplitWriter(tmp, config)
        for chunk in chunks:
            writer.add(chunk)
        info = writer.close(name=config.source, final_path=output_dir, meta=meta)
    log.info("ingested %s: %s", config.source, info.counts)
    return info


def _read_source(config: IngestConfig, meta: dict) -> Iterator[readers.Chunk]:
    """The chunks of ``config.source``; ``meta`` receives ``class_names`` and source
    counts (skipped / ignored files) for ``schema.json``. Layout errors raise here,
    before any work."""
    src = config.source
    shape = config.feature_shape or None
    if src == "builtin:digits":
        return _subset_digits(config) if config.max_examples else readers.read_digits()
    if src == "builtin:synthetic":
        _no_subset(config, src)
        return readers.read_synthetic(
            config.synthetic_examples, config.synthetic_shape, config.synthetic_classes, config.seed
        )
    if src == "builtin:fashion_mnist":
        meta["class_names"] = list(idx.FASHION_MNIST_CLASSES)
        return idx.read_idx_dir(idx.fashion_mnist_dir(), config.max_examples, config.seed)
    if src.startswith("builtin:"):
        raise ConfigError(
            f"IngestConfig.source={src!r} is not allowed: built-in datasets "
            "are builtin:digits, builtin:fashion_mnist and builtin:synthetic"
        )
    if "," not in src and idx.is_idx_dir(src):
        idx.idx_files(src)  # layout errors now
        return idx.read_idx_dir(src, config.max_examples, config.seed)
    if "," not in src and images.is_image_folder(src):
        found = images.scan(src)
        meta["class_names"] = found.class_names
        meta["stats"] = found
        return images.read_image_folder(
            src,
            config.image_size,
            config.channels,
            config.skip_corrupt_images,
            config.max_examples,
            config.seed,
            found,
        )
    _no_subset(config, src)
    lower = src.lower()
    if "," not in src and lower.endswith(".npz"):
        return readers.read_npz(src)
    if "," not in src and lower.endswith(".csv"):
        return readers.read_csv(src, config.label_column, shape)
    files = _tfrecord_files(src)
    shape_known, dtype = _tfopt_dataset_feature(src)
    if shape is None:
        shape = shape_known
    return readers.read_tfrecords(files, config.feature_column, config.label_column, shape, dtype)


def _no_subset(config: IngestConfig, src: str) -> None:
    if config.max_examples:
        raise ConfigError(
            f"IngestConfig.max_examples={config.max_examples} is not allowed for source "
            f"{src!r}: a stratified subset needs the labels up front (image folders, IDX "
            "directories, builtin:fashion_mnist, builtin:digits); use 0"
        )


def _subset_digits(config: IngestConfig) -> Iterator[readers.Chunk]:
    for chunk in readers.read_digits():
        keep = subset.stratified_mask(chunk.y, config.max_examples, config.seed)
        chunk.x, chunk.y, chunk.positions = chunk.x[keep], chunk.y[keep], chunk.positions[keep]
        yield chunk


def _tfrecord_files(src: str) -> list[str]:
    """TFRecord files named by ``src``: a file, a comma-separated list of files,
    a directory (every file but ``*.json``) or a glob. Each listed file must
    exist; ``-NNNNN-of-MMMMM`` shard sets must be complete."""
    from tfopt._keras import tf

    gf = tf.io.gfile
    if "," in src:
        files = [f.strip() for f in src.split(",") if f.strip()]
        for f in files:
            if not gf.exists(f):
                raise DataError(f"{f}: file not found (listed in the source {src!r})")
    elif gf.isdir(src):
        files = sorted(
            f
            for f in gf.glob(os.path.join(src, "*"))
            if not gf.isdir(f)
            and not os.path.basename(f).endswith(".json")
            and not os.path.basename(f).startswith(".")
        )
    elif any(c in src for c in "*?["):
        files = sorted(gf.glob(src))
    elif gf.exists(src):
        files = [src]
    else:
        raise DataError(
            f"{src}: file not found (expected builtin:digits, builtin:synthetic, "
            "a .npz, a .csv, or TFRecord file(s))"
        )
    if not files:
        raise DataError(f"{src}: no TFRecord files found")
    readers.check_shard_set(files)
    return files


def _tfopt_dataset_feature(src: str) -> tuple[tuple[int, ...] | None, str]:
    """Feature shape and stored dtype when ``src`` is a tfopt dataset directory (re-ingest)."""
    schema = os.path.join(src, SCHEMA_FILE)
    if "," in src or not fsutil.exists(schema):
        return None, "float32"
    try:
        raw = fsutil.read_json(schema)
        if raw.get("format") != SCHEMA_FORMAT:
            return None, "float32"
        return tuple(raw["feature"]["shape"]), raw["feature"].get("dtype", "float32")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, "float32"


_CODES = {"train": 0, "validation": 1, "test": 2}


class _SplitAssigner:
    """Exact per-class stratification in a stream.

    The n-th example of class c lands in a split chosen by a seeded
    permutation of a 20-slot block (e.g. 4 test, 2 validation, 14 train
    slots for 0.2 / 0.1), so every split gets its share of every class
    without seeing the whole source first. Vectorized per class and chunk.
    """

    def __init__(self, validation_fraction: float, test_fraction: float, seed: int):
        self.test_slots = round(test_fraction * _BLOCK)
        self.val_slots = round(validation_fraction * _BLOCK)
        self.seed = seed
        self.seen: dict[tuple[bool, int], int] = {}
        self._tables: dict[tuple[bool, int], tuple[int, np.ndarray]] = {}

    def assign(self, labels: np.ndarray, has_test: bool) -> np.ndarray:
        """Split codes (0 train, 1 validation, 2 test) for a chunk of labels."""
        out = np.empty(len(labels), dtype=np.int8)
        for c in np.unique(labels).tolist():
            idx = np.flatnonzero(labels == c)
            key = (has_test, c)
            start = self.seen.get(key, 0)
            self.seen[key] = start + len(idx)
            pos = np.arange(start, start + len(idx))
            block = pos // _BLOCK
            for group in np.unique(block // _GROUP).tolist():
                sel = (block // _GROUP) == group
                table = self._table(has_test, c, group)
                out[idx[sel]] = table[block[sel] % _GROUP, pos[sel] % _BLOCK]
        return out

    def _table(self, has_test: bool, c: int, group: int) -> np.ndarray:
        """Plans of blocks ``group*_GROUP ...``: each row a seeded permutation of the slots."""
        key = (has_test, c)
        cached = self._tables.get(key)
        if cached is not None and cached[0] == group:
            return cached[1]
        plan = np.zeros(_BLOCK, dtype=np.int8)
        if not has_test:
            plan[: self.test_slots] = _CODES["test"]
        off = 0 if has_test else self.test_slots
        plan[off : off + self.val_slots] = _CODES["validation"]
        rng = np.random.default_rng((self.seed, int(has_test), c, group))
        table = rng.permuted(np.tile(plan, (_GROUP, 1)), axis=1)
        self._tables[key] = (group, table)
        return table


class _ShardWriter:
    """Writes one split: shuffles within a window, rolls shards at ``shard_size``."""

    def __init__(self, directory: str, split: str, config: IngestConfig):
        self.dir, self.split, self.config = directory, split, config
        self.rng = np.random.default_rng((config.seed, SPLITS.index(split)))
        self.buf_x: list[np.ndarray] = []
        self.buf_y: list[np.ndarray] = []
        self.buffered = 0
        self.window = config.shuffle_window
        self.count = 0
        self.shards: list[str] = []
        self._writer: Any = None  # tf.io.TFRecordWriter of the open shard
        self._in_shard = 0
        self._encoder: ExampleEncoder | None = None

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        if self._encoder is None:
            self.dtype = x.dtype
            self._encoder = ExampleEncoder(int(np.prod(x.shape[1:])) * x.dtype.itemsize)
            self.window = max(
                1,
                min(self.config.shuffle_window, self.config.buffer_bytes // self._encoder.data_len),
            )
        self.buf_x.append(x)
        self.buf_y.append(y)
        self.buffered += len(y)
        if self.buffered >= self.window:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        from tfopt._keras import tf

        order = self.rng.permutation(self.buffered)
        x = np.ascontiguousarray(np.concatenate(self.buf_x)[order], dtype=self.dtype)
        y = np.concatenate(self.buf_y)[order]
        self.buf_x, self.buf_y, self.buffered = [], [], 0
        assert self._encoder is not None  # set by the first add(); nothing buffered without it
        records = self._encoder.encode(x, y)
        done = 0
        while done < len(records):
            if self._writer is None:
                name = f"{self.split}-{len(self.shards):05d}.tfrecord"
                self.shards.append(name)
                self._writer = tf.io.TFRecordWriter(os.path.join(self.dir, name))
            take = min(self.config.shard_size - self._in_shard, len(records) - done)
            write = self._writer.write
            for rec in records[done : done + take]:
                write(rec)
            done += take
            self._in_shard += take
            self.count += take
            if self._in_shard == self.config.shard_size:
                self._writer.close()
                self._writer, self._in_shard = None, 0

    def close(self) -> list[str]:
        self.flush()
        if self._writer is not None:
            self._writer.close()
        final = []
        for i, name in enumerate(self.shards):
            new = f"{self.split}-{i:05d}-of-{len(self.shards):05d}.tfrecord"
            _rename(os.path.join(self.dir, name), os.path.join(self.dir, new))
            final.append(new)
        return final


def _rename(src: str, dst: str) -> None:
    if fsutil.is_remote(src):
        from tfopt._keras import tf

        tf.io.gfile.rename(src, dst, overwrite=True)
    else:
        os.replace(src, dst)


class _SplitWriter:
    """Routes checked chunks to the three split writers and writes the schema."""

    def __init__(self, directory: str, config: IngestConfig):
        self.dir, self.config = directory, config
        self.assigner = _SplitAssigner(
            config.validation_fraction, config.test_fraction, config.seed
        )
        self.writers = {s: _ShardWriter(directory, s, config) for s in SPLITS}
        self.shape: tuple[int, ...] | None = None
        self.dtype: np.dtype | None = None
        self.first_origin = ""
        self.class_counts: dict[str, np.ndarray] = {s: np.zeros(0, np.int64) for s in SPLITS}
        self.labels = labels.LabelTracker()

    def add(self, chunk: readers.Chunk) -> None:
        if len(chunk.y) == 0:
            return
        shape = tuple(chunk.x.shape[1:])
        if self.shape is None:
            self.shape, self.dtype, self.first_origin = shape, chunk.x.dtype, chunk.origin
        elif chunk.x.dtype != self.dtype:  # a reader mixing dtypes is a bug, not bad data
            raise DataError(
                f"{chunk.origin}: features are {chunk.x.dtype} but {self.first_origin} "
                f"were {self.dtype}"
            )
        elif shape != self.shape:
            raise DataError(
                f"{chunk.origin}: examples have shape {shape} but "
                f"{self.first_origin} had {self.shape}"
            )
        k = self.config.num_classes
        if k and (chunk.y >= k).any():
            row = int(np.argmax(chunk.y >= k))
            raise DataError(
                f"{chunk.at(row)}: label {chunk.y[row]} is outside [0, {k}) (num_classes={k})"
            )
        self.labels.add(chunk)
        if chunk.split in SPLITS:
            codes = np.full(len(chunk.y), _CODES[chunk.split], dtype=np.int8)
        else:  # None: split three ways; "trainval": the source has its own test split
            codes = self.assigner.assign(chunk.y, has_test=chunk.split == "trainval")
        for s in SPLITS:
            mask = codes == _CODES[s]
            if mask.any():
                ys = chunk.y[mask]
                self.writers[s].add(chunk.x[mask], ys)
                counts = np.bincount(ys)
                cur = self.class_counts[s]
                size = max(len(cur), len(counts))
                self.class_counts[s] = np.pad(cur, (0, size - len(cur))) + np.pad(
                    counts, (0, size - len(counts))
                )

    def close(self, name: str, final_path: str, meta: dict | None = None) -> DatasetInfo:
        shards = {s: w.close() for s, w in self.writers.items()}
        counts = {s: w.count for s, w in self.writers.items()}
        if self.shape is None or counts["train"] == 0:
            raise DataError(f"{name}: no examples were read")
        # a source naming its classes (image folders, Fashion-MNIST) has class ids by construction
        named = len((meta or {}).get("class_names", ()))
        self.labels.check(name, self.config.num_classes or named, self.config.force_classification)
        inferred = max(len(c) for c in self.class_counts.values())
        num_classes = self.config.num_classes or inferred
        if num_classes < 2:
            raise DataError(f"{name}: found a single class; classification needs at least 2")
        meta = meta or {}
        class_names = tuple(meta.get("class_names", ()))
        if class_names and len(class_names) != num_classes:
            raise DataError(
                f"{name}: the source names {len(class_names)} classes but num_classes is "
                f"{num_classes}"
            )
        extra = meta["stats"].stats() if "stats" in meta else {}
        if self.config.max_examples:
            extra["subset"] = {"max_examples": self.config.max_examples, "stratified": True}
        class_counts = {
            s: np.pad(c, (0, num_classes - len(c))).tolist() for s, c in self.class_counts.items()
        }
        files = [os.path.join(self.dir, f) for s in SPLITS for f in shards[s]]
        info = DatasetInfo(
            path=final_path,
            name=name,
            feature_shape=self.shape,
            num_classes=num_classes,
            counts=counts,
            shards=shards,
            class_counts=class_counts,
            content_sha256=fsutil.sha256_files(files),
            feature_dtype=str(self.dtype),
            class_names=class_names,
            extra=extra,
        )
        write_schema(self.dir, info)
        return info
