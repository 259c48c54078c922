"""Dataset ingest (any source -> sharded TFRecords + schema.json) and tf.data input pipelines.

The dataset artifact is a directory::

    schema.json
    train-00000-of-00002.tfrecord ...
    validation-00000-of-00001.tfrecord
    test-00000-of-00001.tfrecord

Each record is a ``tf.train.Example`` with ``x`` (raw float32 bytes, shape in
the schema) and ``label`` (int64). Ingest streams: memory stays bounded by the
shuffle window and chunk size whatever the size of the source.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from tfopt import fsutil, sources
from tfopt.config import check_choice, check_float, check_int, check_str
from tfopt.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SCHEMA_FILE = "schema.json"
SCHEMA_FORMAT = "tfopt.dataset/v1"
FEATURE_KEY = "x"
LABEL_KEY = "label"
_BLOCK = 20  # stratification block: each class is split in blocks of 20 examples


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
                raise ConfigError(f"{name}.{fname}={dims!r} is not allowed: "
                                  "expected positive integer dimensions")
        check_int(name, "num_classes", self.num_classes, 0, 100_000)
        check_float(name, "validation_fraction", self.validation_fraction, 0.0, 0.5)
        check_float(name, "test_fraction", self.test_fraction, 0.0, 0.5)
        check_int(name, "seed", self.seed, 0, 2**31 - 1)
        check_int(name, "shard_size", self.shard_size, 1, 10_000_000)
        check_int(name, "shuffle_window", self.shuffle_window, 1, 10_000_000)
        check_int(name, "synthetic_examples", self.synthetic_examples, 10, 1_000_000_000)
        check_int(name, "synthetic_classes", self.synthetic_classes, 2, 10_000)
        if not self.synthetic_shape:
            raise ConfigError(f"{name}.synthetic_shape=() is not allowed: expected dimensions")


@dataclass(frozen=True)
class DatasetInfo:
    """What ``schema.json`` says about a dataset artifact."""

    path: str
    name: str
    feature_shape: tuple[int, ...]
    num_classes: int
    counts: dict[str, int]
    shards: dict[str, list[str]]
    class_counts: dict[str, list[int]]
    content_sha256: str
    feature_dtype: str = "float32"
    extra: dict = field(default_factory=dict)

    def files(self, split: str) -> list[str]:
        if split not in self.shards:
            raise DataError(f"{self.path}: no split {split!r}; splits: {', '.join(self.shards)}")
        return [os.path.join(self.path, s) for s in self.shards[split]]

    def to_summary(self) -> dict:
        return {"name": self.name, "num_train": self.counts.get("train", 0),
                "num_validation": self.counts.get("validation", 0),
                "num_test": self.counts.get("test", 0), "num_classes": self.num_classes}


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


def _read_source(config: IngestConfig) -> Iterator[sources.Chunk]:
    src = config.source
    shape = config.feature_shape or None
    if src == "builtin:digits":
        return sources.read_digits()
    if src == "builtin:synthetic":
        return sources.read_synthetic(config.synthetic_examples, config.synthetic_shape,
                                      config.synthetic_classes, config.seed)
    if src.startswith("builtin:"):
        raise ConfigError(f"IngestConfig.source={src!r} is not allowed: built-in datasets "
                          "are builtin:digits and builtin:synthetic")
    lower = src.lower()
    if lower.endswith(".npz"):
        return sources.read_npz(src)
    if lower.endswith(".csv"):
        return sources.read_csv(src, config.label_column, shape)
    files = _tfrecord_files(src)
    return sources.read_tfrecords(files, config.feature_column, config.label_column, shape)


def _tfrecord_files(src: str) -> list[str]:
    from tfopt._keras import tf

    gf = tf.io.gfile
    if gf.isdir(src):
        files = sorted(f for f in gf.glob(os.path.join(src, "*"))
                       if not gf.isdir(f) and not os.path.basename(f).endswith(".json"))
    elif any(c in src for c in "*?["):
        files = sorted(gf.glob(src))
    elif gf.exists(src):
        files = [src]
    else:
        raise DataError(f"{src}: file not found (expected builtin:digits, builtin:synthetic, "
                        "a .npz, a .csv, or TFRecord file(s))")
    if not files:
        raise DataError(f"{src}: no TFRecord files found")
    return files


class _SplitAssigner:
    """Exact per-class stratification in a stream.

    The n-th example of class c lands in a split chosen by a seeded
    permutation of a 20-slot block, so every split gets its share of every
    class without seeing the whole source first.
    """

    def __init__(self, validation_fraction: float, test_fraction: float, seed: int):
        self.slots = {
            "test": round(test_fraction * _BLOCK),
            "validation": round(validation_fraction * _BLOCK),
        }
        self.seed = seed
        self.seen: dict[tuple[bool, int], int] = {}
        self.plans: dict[tuple[bool, int], list[str]] = {}

    def assign(self, labels: np.ndarray, has_test: bool) -> np.ndarray:
        out = np.empty(len(labels), dtype=object)
        for i, c in enumerate(labels.tolist()):
            key = (has_test, c)
            n = self.seen.get(key, 0)
            self.seen[key] = n + 1
            block, pos = divmod(n, _BLOCK)
            if pos == 0 or key not in self.plans:
                self.plans[key] = self._plan(has_test, c, block)
            out[i] = self.plans[key][pos]
        return out

    def _plan(self, has_test: bool, c: int, block: int) -> list[str]:
        plan = [] if has_test else ["test"] * self.slots["test"]
        plan += ["validation"] * self.slots["validation"]
        plan += ["train"] * (_BLOCK - len(plan))
        order = np.random.default_rng((self.seed, int(has_test), c, block)).permutation(_BLOCK)
        return [plan[j] for j in order]


class _ShardWriter:
    """Writes one split: shuffles within a window, rolls shards at ``shard_size``."""

    def __init__(self, directory: str, split: str, config: IngestConfig):
        self.dir, self.split, self.config = directory, split, config
        self.rng = np.random.default_rng((config.seed, SPLITS.index(split)))
        self.buf_x: list[np.ndarray] = []
        self.buf_y: list[np.ndarray] = []
        self.buffered = 0
        self.count = 0
        self.shards: list[str] = []
        self._writer = None
        self._in_shard = 0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        self.buf_x.append(x)
        self.buf_y.append(y)
        self.buffered += len(y)
        if self.buffered >= self.config.shuffle_window:
            self.flush()

    def flush(self) -> None:
        if not self.buffered:
            return
        from tfopt._keras import tf

        x = np.concatenate(self.buf_x)
        y = np.concatenate(self.buf_y)
        self.buf_x, self.buf_y, self.buffered = [], [], 0
        for i in self.rng.permutation(len(y)):
            if self._writer is None:
                name = f"{self.split}-{len(self.shards):05d}.tfrecord"
                self.shards.append(name)
                self._writer = tf.io.TFRecordWriter(os.path.join(self.dir, name))
            self._writer.write(_encode(x[i], int(y[i])))
            self._in_shard += 1
            self.count += 1
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
            fsutil_rename(os.path.join(self.dir, name), os.path.join(self.dir, new))
            final.append(new)
        return final


def fsutil_rename(src: str, dst: str) -> None:
    from tfopt._keras import tf

    tf.io.gfile.rename(src, dst, overwrite=True)


def _encode(x: np.ndarray, y: int) -> bytes:
    from tfopt._keras import tf

    feats = {
        FEATURE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[x.tobytes()])),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[y])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


class _SplitWriter:
    """Routes checked chunks to the three split writers and writes the schema."""

    def __init__(self, directory: str, config: IngestConfig):
        self.dir, self.config = directory, config
        self.assigner = _SplitAssigner(config.validation_fraction, config.test_fraction,
                                       config.seed)
        self.writers = {s: _ShardWriter(directory, s, config) for s in SPLITS}
        self.shape: tuple[int, ...] | None = None
        self.first_origin = ""
        self.class_counts: dict[str, np.ndarray] = {s: np.zeros(0, np.int64) for s in SPLITS}

    def add(self, chunk: sources.Chunk) -> None:
        if len(chunk.y) == 0:
            return
        shape = tuple(chunk.x.shape[1:])
        if self.shape is None:
            self.shape, self.first_origin = shape, chunk.origin
        elif shape != self.shape:
            raise DataError(f"{chunk.origin}: examples have shape {shape} but "
                            f"{self.first_origin} had {self.shape}")
        k = self.config.num_classes
        if k and (chunk.y >= k).any():
            row = int(np.argmax(chunk.y >= k))
            raise DataError(f"{chunk.origin}: row {row} has label {chunk.y[row]} outside "
                            f"[0, {k}) (num_classes={k})")
        if chunk.split in SPLITS:
            splits = np.full(len(chunk.y), chunk.split, dtype=object)
        else:  # None: split three ways; "trainval": the source has its own test split
            splits = self.assigner.assign(chunk.y, has_test=chunk.split == "trainval")
        for s in SPLITS:
            mask = splits == s
            if mask.any():
                self.writers[s].add(chunk.x[mask], chunk.y[mask])
                counts = np.bincount(chunk.y[mask])
                cur = self.class_counts[s]
                size = max(len(cur), len(counts))
                self.class_counts[s] = (np.pad(cur, (0, size - len(cur)))
                                        + np.pad(counts, (0, size - len(counts))))

    def close(self, name: str, final_path: str) -> DatasetInfo:
        shards = {s: w.close() for s, w in self.writers.items()}
        counts = {s: w.count for s, w in self.writers.items()}
        if self.shape is None or counts["train"] == 0:
            raise DataError(f"{name}: no examples were read")
        inferred = max(len(c) for c in self.class_counts.values())
        num_classes = self.config.num_classes or inferred
        if num_classes < 2:
            raise DataError(f"{name}: found a single class; classification needs at least 2")
        class_counts = {s: np.pad(c, (0, num_classes - len(c))).tolist()
                        for s, c in self.class_counts.items()}
        files = [os.path.join(self.dir, f) for s in SPLITS for f in shards[s]]
        info = DatasetInfo(
            path=final_path, name=name, feature_shape=self.shape, num_classes=num_classes,
            counts=counts, shards=shards, class_counts=class_counts,
            content_sha256=fsutil.sha256_files(files))
        write_schema(self.dir, info)
        return info


def write_schema(directory: str, info: DatasetInfo) -> None:
    payload = {
        "format": SCHEMA_FORMAT,
        "name": info.name,
        "feature": {"name": FEATURE_KEY, "shape": list(info.feature_shape),
                    "dtype": info.feature_dtype},
        "label": {"name": LABEL_KEY, "num_classes": info.num_classes},
        "splits": {s: {"count": info.counts[s], "shards": info.shards[s],
                       "class_counts": info.class_counts[s]} for s in info.counts},
        "content_sha256": info.content_sha256,
        **info.extra,
    }
    fsutil.write_json(os.path.join(directory, SCHEMA_FILE), payload)


def load_info(dataset_dir: str) -> DatasetInfo:
    """Read and check ``schema.json`` of a dataset artifact."""
    path = os.path.join(dataset_dir, SCHEMA_FILE)
    if not fsutil.exists(path):
        raise DataError(f"{dataset_dir}: not a tfopt dataset (no {SCHEMA_FILE})")
    try:
        raw = fsutil.read_json(path)
        if raw.get("format") != SCHEMA_FORMAT:
            raise DataError(f"{path}: format {raw.get('format')!r}; expected {SCHEMA_FORMAT!r}")
        info = DatasetInfo(
            path=dataset_dir, name=raw["name"], feature_shape=tuple(raw["feature"]["shape"]),
            num_classes=int(raw["label"]["num_classes"]),
            counts={s: int(v["count"]) for s, v in raw["splits"].items()},
            shards={s: list(v["shards"]) for s, v in raw["splits"].items()},
            class_counts={s: list(v.get("class_counts", [])) for s, v in raw["splits"].items()},
            content_sha256=raw["content_sha256"], feature_dtype=raw["feature"]["dtype"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: malformed schema ({type(exc).__name__}: {exc})") from None
    for split in info.shards:
        for f in info.files(split):
            if not fsutil.exists(f):
                raise DataError(f"{dataset_dir}: shard {os.path.basename(f)} of split "
                                f"{split!r} is listed in {SCHEMA_FILE} but missing")
    return info


# --- input pipelines ------------------------------------------------------------


@dataclass(frozen=True)
class InputConfig:
    """How a split is fed to training or evaluation.

    Attributes:
        batch_size: examples per batch (global batch under a strategy).
        shuffle: shuffle examples (seeded) every epoch.
        seed: shuffle seed.
        cache: ``auto`` caches in memory when the split fits ``cache_budget_bytes``,
            else not at all; ``memory``; ``none``; or a file path prefix to cache to disk.
        cache_budget_bytes: memory budget for ``auto``.
        shuffle_buffer: examples in the shuffle buffer (0 = whole split when cached).
        deterministic: keep a fixed element order (slower parallel reads).
        drop_remainder: drop the last partial batch (static batch shapes).
    """

    batch_size: int = 64
    shuffle: bool = False
    seed: int = 42
    cache: str = "auto"
    cache_budget_bytes: int = 1 << 30
    shuffle_buffer: int = 0
    deterministic: bool = True
    drop_remainder: bool = False

    def __post_init__(self):
        check_int("InputConfig", "batch_size", self.batch_size, 1, 1 << 20)
        check_int("InputConfig", "cache_budget_bytes", self.cache_budget_bytes, 0)
        check_int("InputConfig", "shuffle_buffer", self.shuffle_buffer, 0)
        if self.cache not in ("auto", "memory", "none"):
            check_str("InputConfig", "cache", self.cache)


def make_dataset(info: DatasetInfo, split: str, config: InputConfig = InputConfig(),
                 limit: int | None = None):
    """A ``tf.data`` pipeline over one split yielding ``(x, label)`` batches.

    interleave over shards (parallel reads) -> parallel parse -> cache -> seeded
    shuffle -> batch -> prefetch, all AUTOTUNE. Under a multi-worker strategy
    the files are auto-sharded across workers (data-sharded when there are
    fewer files than workers).
    """
    from tfopt._keras import tf

    files = info.files(split)
    shape = list(info.feature_shape)
    count = info.counts[split] if limit is None else min(limit, info.counts[split])
    files_ds = tf.data.Dataset.from_tensor_slices(files)
    ds = files_ds.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), 8),
                             num_parallel_calls=tf.data.AUTOTUNE,
                             deterministic=config.deterministic)
    if limit is not None:
        ds = ds.take(limit)
    spec = {FEATURE_KEY: tf.io.FixedLenFeature([], tf.string),
            LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        ex = tf.io.parse_single_example(record, spec)
        x = tf.reshape(tf.io.decode_raw(ex[FEATURE_KEY], tf.float32), shape)
        return x, ex[LABEL_KEY]

    ds = ds.map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
    cached = _apply_cache(config, count * (int(np.prod(shape)) * 4 + 8))
    if cached == "memory":
        ds = ds.cache()
    elif cached != "none":
        ds = ds.cache(cached)
    if config.shuffle:
        buffer = config.shuffle_buffer or (count if cached == "memory" else min(count, 10_000))
        ds = ds.shuffle(max(buffer, 1), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(config.batch_size, drop_remainder=config.drop_remainder,
                  num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
    options = tf.data.Options()
    options.deterministic = config.deterministic
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.AUTO
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


def _apply_cache(config: InputConfig, approx_bytes: int) -> str:
    if config.cache == "auto":
        return "memory" if approx_bytes <= config.cache_budget_bytes else "none"
    return config.cache


def load_arrays(info: DatasetInfo, split: str, limit: int | None = None,
                ) -> tuple[np.ndarray, np.ndarray]:
    """A bounded sample of one split as NumPy arrays (evaluation, calibration)."""
    xs, ys = [], []
    ds = make_dataset(info, split, InputConfig(batch_size=1024, cache="none"), limit=limit)
    for x, y in ds.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not xs:
        raise DataError(f"{info.path}: split {split!r} is empty")
    return np.concatenate(xs), np.concatenate(ys)


def replace(info: DatasetInfo, **changes) -> DatasetInfo:
    return dataclasses.replace(info, **changes)
