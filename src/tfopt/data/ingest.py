"""Ingest: any source -> sharded TFRecords + ``schema.json``.

Ingest streams: memory stays bounded by the shuffle window and chunk size
whatever the size of the source. Splits are seeded and stratified per class.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tfopt import fsutil
from tfopt.checks import check_float, check_int, check_str
from tfopt.data import readers
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


# --- ingest -------------------------------------------------------------------


def ingest(output_dir: str, config: IngestConfig = IngestConfig()) -> DatasetInfo:
    """Read ``config.source``, split it and write the dataset artifact to ``output_dir``.

    The directory appears only when everything was read, checked and written.
    """
    chunks = _read_source(config)
    with fsutil.atomic_dir(output_dir) as tmp:
        writer = _SplitWriter(tmp, config)
        for chunk in chunks:
            writer.add(chunk)
        info = writer.close(name=config.source, final_path=output_dir)
    log.info("ingested %s: %s", config.source, info.counts)
    return info


def _read_source(config: IngestConfig) -> Iterator[readers.Chunk]:
    src = config.source
    shape = config.feature_shape or None
    if src == "builtin:digits":
        return readers.read_digits()
    if src == "builtin:synthetic":
        return readers.read_synthetic(
            config.synthetic_examples, config.synthetic_shape, config.synthetic_classes, config.seed
        )
    if src.startswith("builtin:"):
        raise ConfigError(
            f"IngestConfig.source={src!r} is not allowed: built-in datasets "
            "are builtin:digits and builtin:synthetic"
        )
    lower = src.lower()
    if "," not in src and lower.endswith(".npz"):
        return readers.read_npz(src)
    if "," not in src and lower.endswith(".csv"):
        return readers.read_csv(src, config.label_column, shape)
    files = _tfrecord_files(src)
    if shape is None:
        shape = _tfopt_dataset_shape(src)
    return readers.read_tfrecords(files, config.feature_column, config.label_column, shape)


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


def _tfopt_dataset_shape(src: str) -> tuple[int, ...] | None:
    """The feature shape when ``src`` is a tfopt dataset directory (re-ingest)."""
    schema = os.path.join(src, SCHEMA_FILE)
    if "," in src or not fsutil.exists(schema):
        return None
    try:
        raw = fsutil.read_json(schema)
        return tuple(raw["feature"]["shape"]) if raw.get("format") == SCHEMA_FORMAT else None
    except (ValueError, KeyError, TypeError):
        return None


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
        self._writer = None
        self._in_shard = 0
        self._encoder: ExampleEncoder | None = None

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        if self._encoder is None:
            self._encoder = ExampleEncoder(int(np.prod(x.shape[1:])) * 4)
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
        x = np.ascontiguousarray(np.concatenate(self.buf_x)[order], dtype=np.float32)
        y = np.concatenate(self.buf_y)[order]
        self.buf_x, self.buf_y, self.buffered = [], [], 0
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
        self.first_origin = ""
        self.class_counts: dict[str, np.ndarray] = {s: np.zeros(0, np.int64) for s in SPLITS}

    def add(self, chunk: readers.Chunk) -> None:
        if len(chunk.y) == 0:
            return
        shape = tuple(chunk.x.shape[1:])
        if self.shape is None:
            self.shape, self.first_origin = shape, chunk.origin
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

    def close(self, name: str, final_path: str) -> DatasetInfo:
        shards = {s: w.close() for s, w in self.writers.items()}
        counts = {s: w.count for s, w in self.writers.items()}
        if self.shape is None or counts["train"] == 0:
            raise DataError(f"{name}: no examples were read")
        inferred = max(len(c) for c in self.class_counts.values())
        num_classes = self.config.num_classes or inferred
        if num_classes < 2:
            raise DataError(f"{name}: found a single class; classification needs at least 2")
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
        )
        write_schema(self.dir, info)
        return info
