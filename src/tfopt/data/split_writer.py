"""Ingest's writing pass: each example to its split, each split to TFRecord shards, then the
schema (:class:`SplitWriter`).

Splits are seeded and stratified per class in a stream (:class:`SplitAssigner`); each
split is shuffled within a bounded window before it is written (:class:`ShardWriter`), so
memory stays bounded whatever the size of the source.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tfopt import fsutil
from tfopt.data import labels, readers
from tfopt.data.codec import ExampleEncoder
from tfopt.data.ingest_config import IngestConfig
from tfopt.data.schema import SPLITS, DatasetInfo, write_schema
from tfopt.data.statistics import DatasetStatistics, write_statistics
from tfopt.errors import DataError

_BLOCK = 20  # stratification block: each class is split in blocks of 20 examples
_GROUP = 256  # blocks whose slot permutations are drawn together
_CODES = {"train": 0, "validation": 1, "test": 2}


class SplitAssigner:
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


class ShardWriter:
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


class SplitWriter:
    """Routes checked chunks to the three split writers and writes the schema."""

    def __init__(self, directory: str, config: IngestConfig):
        self.dir, self.config = directory, config
        self.assigner = SplitAssigner(config.validation_fraction, config.test_fraction, config.seed)
        self.writers = {s: ShardWriter(directory, s, config) for s in SPLITS}
        self.shape: tuple[int, ...] | None = None
        self.dtype: np.dtype | None = None
        self.first_origin = ""
        self.class_counts: dict[str, np.ndarray] = {s: np.zeros(0, np.int64) for s in SPLITS}
        self.labels = labels.LabelTracker()
        self.stats = DatasetStatistics()  # in this pass: no second read of the data

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
                xs, ys = chunk.x[mask], chunk.y[mask]
                self.writers[s].add(xs, ys)
                self.stats.add(s, xs, ys)
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
        sizes = meta["stats"].size_distribution() if "stats" in meta else None
        write_statistics(
            self.dir, self.stats.result(self.shape, str(self.dtype), num_classes, sizes)
        )
        write_schema(self.dir, info)
        return info
