"""tf.data input pipelines over a dataset artifact: parallel reads, cache, seeded shuffle,
prefetch, sharding across workers."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tfopt import fsutil
from tfopt.checks import check_choice, check_float, check_int, check_str
from tfopt.data.schema import FEATURE_KEY, LABEL_KEY, DatasetInfo
from tfopt.errors import ConfigError, DataError

log = logging.getLogger(__name__)


# --- input pipelines ------------------------------------------------------------


AUTO_SHARD = ("auto", "file", "data", "off")


DEFAULT_SHUFFLE_BUFFER = 16_384


@dataclass(frozen=True)
class InputConfig:
    """How a split is fed to training or evaluation.

    Attributes:
        batch_size: examples per batch (global batch under a strategy).
        shuffle: shuffle shard order and examples (seeded) every epoch.
        seed: shuffle seed.
        cache: ``auto`` caches in memory when the split fits ``cache_budget_bytes``,
            else to ``cache_file`` when set, else not at all; ``memory``; ``none``;
            or a local file path prefix to cache to disk.
        cache_budget_bytes: memory budget for ``auto``.
        cache_file: local file prefix for ``auto`` when the split does not fit in
            memory (the split name is appended); "" = do not cache then.
        shuffle_buffer: examples in the shuffle buffer (0 = the whole split, up to
            ``DEFAULT_SHUFFLE_BUFFER``).
        deterministic: keep a fixed element order (same seed, same batches);
            False lets parallel reads return elements as they come (faster).
        drop_remainder: drop the last partial batch (static batch shapes).
        auto_shard: how a multi-worker strategy splits the data across workers:
            ``auto`` (``file`` when there are at least as many shards as
            workers, else ``data``), ``file``, ``data`` or ``off``.
        num_workers: workers for ``auto``; 0 reads them from ``TF_CONFIG``.
        read_parallelism: shards read at the same time (interleave cycle length).
        augment_flip: random left-right flips (training only; off by default).
        augment_crop: pad images by this many pixels (edge values) and crop back at a
            random offset, per image; 0 = off.
        augment_brightness: add a random offset in ``[-b, b]`` times the pixel range
            (255 for uint8 images, 1 otherwise) per image; 0 = off.
        All augmentation is seeded by ``seed``: the same seed gives the same images.
    """

    batch_size: int = 64
    shuffle: bool = False
    seed: int = 42
    cache: str = "auto"
    cache_budget_bytes: int = 1 << 30
    cache_file: str = ""
    shuffle_buffer: int = 0
    deterministic: bool = True
    drop_remainder: bool = False
    auto_shard: str = "auto"
    num_workers: int = 0
    read_parallelism: int = 8
    augment_flip: bool = False
    augment_crop: int = 0
    augment_brightness: float = 0.0

    def __post_init__(self):
        check_int("InputConfig", "batch_size", self.batch_size, 1, 1 << 20)
        check_int("InputConfig", "seed", self.seed, 0, 2**63 - 1)
        check_int("InputConfig", "cache_budget_bytes", self.cache_budget_bytes, 0)
        check_int("InputConfig", "shuffle_buffer", self.shuffle_buffer, 0)
        check_int("InputConfig", "num_workers", self.num_workers, 0, 100_000)
        check_int("InputConfig", "read_parallelism", self.read_parallelism, 1, 1024)
        check_choice("InputConfig", "auto_shard", self.auto_shard, AUTO_SHARD)
        check_int("InputConfig", "augment_crop", self.augment_crop, 0, 1024)
        check_float("InputConfig", "augment_brightness", self.augment_brightness, 0.0, 1.0)
        if self.cache not in ("auto", "memory", "none"):
            check_str("InputConfig", "cache", self.cache)
            if fsutil.is_remote(self.cache):
                raise ConfigError(
                    f"InputConfig.cache={self.cache!r} is not allowed: "
                    "cache to a local file, 'memory', 'auto' or 'none'"
                )
        if self.cache_file and fsutil.is_remote(self.cache_file):
            raise ConfigError(
                f"InputConfig.cache_file={self.cache_file!r} is not allowed: expected a local path"
            )


AUGMENTS = ("flip", "crop", "brightness")
DEFAULT_CROP = 2  # pixels, for a bare "crop"
DEFAULT_BRIGHTNESS = 0.1  # of the pixel range, for a bare "brightness"


def parse_augment(spec: str, owner: str = "TrainConfig.augment") -> dict:
    """``InputConfig`` augmentation fields from a spec such as ``"flip,crop=4,brightness=0.2"``.

    "" turns augmentation off. A bare ``crop`` pads/crops by ``DEFAULT_CROP`` pixels, a bare
    ``brightness`` shifts by up to ``DEFAULT_BRIGHTNESS`` of the pixel range.

    Raises:
        ConfigError: an unknown item, a repeated item, a value on ``flip`` or a bad number.
    """
    fields: dict = {}
    allowed = "comma-separated flip, crop[=PIXELS 1..1024], brightness[=FRACTION (0, 1]], or ''"
    for item in filter(None, (part.strip() for part in str(spec).split(","))):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        bad = ConfigError(f"{owner}={spec!r} is not allowed: item {item!r}; expected {allowed}")
        if name not in AUGMENTS or f"augment_{name}" in fields or (sep and not value):
            raise bad
        try:
            if name == "flip":
                if sep:
                    raise bad
                fields["augment_flip"] = True
            elif name == "crop":
                pixels = int(value) if sep else DEFAULT_CROP
                if not 1 <= pixels <= 1024:
                    raise bad
                fields["augment_crop"] = pixels
            else:
                fraction = float(value) if sep else DEFAULT_BRIGHTNESS
                if not 0.0 < fraction <= 1.0:
                    raise bad
                fields["augment_brightness"] = fraction
        except ValueError:
            raise bad from None
    return fields


def auto_shard_policy(num_files: int, num_workers: int, requested: str = "auto") -> str:
    """The ``tf.data`` auto-shard policy name for a split of ``num_files`` shards.

    ``FILE`` (each worker reads whole shards, no wasted reads) when there are
    at least as many shards as workers, else ``DATA`` (every worker reads
    everything and keeps every n-th element). ``OFF`` leaves sharding to the caller.
    """
    check_choice("auto_shard_policy", "requested", requested, AUTO_SHARD)
    if requested != "auto":
        return requested.upper()
    return "FILE" if num_files >= max(num_workers, 1) else "DATA"


def _num_workers(config: InputConfig) -> int:
    if config.num_workers:
        return config.num_workers
    from tfopt import distribute

    return distribute.parse_tf_config().num_workers


def cache_mode(info: DatasetInfo, split: str, config: InputConfig) -> str:
    """``memory``, ``none`` or a cache file path: what ``make_dataset`` does for ``split``."""
    itemsize = np.dtype(info.feature_dtype).itemsize  # cached as stored (uint8 stays small)
    approx = info.counts[split] * (int(np.prod(info.feature_shape)) * itemsize + 8)
    prefix = config.cache
    if config.cache == "auto":
        if approx <= config.cache_budget_bytes:
            return "memory"
        prefix = config.cache_file
        if not prefix:
            return "none"
    elif config.cache in ("memory", "none"):
        return config.cache
    from tfopt import distribute

    cluster = distribute.parse_tf_config()  # workers sharing a disk get their own files
    worker = f"-{cluster.task_type}{cluster.task_index}" if cluster.num_workers > 1 else ""
    return f"{prefix}-{split}{worker}"


def _records(
    info: DatasetInfo,
    split: str,
    config: InputConfig,
    limit: int | None,
    cycle_length: int | None = None,
):
    from tfopt._keras import tf

    files = info.files(split)
    files_ds = tf.data.Dataset.from_tensor_slices(files)
    if config.shuffle and len(files) > 1:
        files_ds = files_ds.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
    ds = files_ds.interleave(
        lambda f: tf.data.TFRecordDataset(f, buffer_size=1 << 20),
        cycle_length=cycle_length or min(len(files), config.read_parallelism),
        block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=config.deterministic,
    )
    if limit is not None:
        ds = ds.take(limit)
    return ds


def _parser(info: DatasetInfo, cast: bool = True):
    """Batch parser: records -> ``(x, label)``; x as stored (``cast=False``) or float32.

    uint8 images keep their 0..255 values: the model's normalization layer scales them.
    """
    from tfopt._keras import tf

    shape = list(info.feature_shape)
    dtype = tf.as_dtype(info.feature_dtype)
    spec = {
        FEATURE_KEY: tf.io.FixedLenFeature([], tf.string),
        LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
    }

    def parse_batch(records):
        ex = tf.io.parse_example(records, spec)
        x = tf.reshape(tf.io.decode_raw(ex[FEATURE_KEY], dtype), [-1, *shape])
        if cast and x.dtype != tf.float32:
            x = tf.cast(x, tf.float32)
        return x, ex[LABEL_KEY]

    return parse_batch


def _to_float(x, y):
    from tfopt._keras import tf

    return (tf.cast(x, tf.float32) if x.dtype != tf.float32 else x), y


def make_dataset(
    info: DatasetInfo, split: str, config: InputConfig = InputConfig(), limit: int | None = None
):
    """A ``tf.data`` pipeline over one split yielding ``(x, label)`` batches.

    interleave over shards (parallel reads) -> [parse -> cache] -> seeded
    shuffle -> batch -> [vectorized parse] -> prefetch, all AUTOTUNE. Uncached
    splits shuffle the serialized records and parse whole batches at once.
    Under a multi-worker strategy the data is auto-sharded with
    :func:`auto_shard_policy`.
    """
    from tfopt._keras import tf

    files = info.files(split)
    count = info.counts[split] if limit is None else min(limit, info.counts[split])
    parse_batch = _parser(info)
    ds = _records(info, split, config, limit)
    cached = cache_mode(info, split, config)
    stored = info.feature_dtype != "float32"
    autotune = tf.data.AUTOTUNE
    if cached != "none":
        ds = _cache(_decode(ds, info, config), cached)
    if config.shuffle:
        # Bounded: a buffer as large as a big split costs more per example (memory
        # traffic) and ingest already shuffled the records within windows.
        buffer = config.shuffle_buffer or min(count, DEFAULT_SHUFFLE_BUFFER)
        ds = ds.shuffle(max(buffer, 1), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(
        config.batch_size,
        drop_remainder=config.drop_remainder,
        num_parallel_calls=autotune,
        deterministic=config.deterministic,
    )
    if cached == "none":
        ds = ds.map(parse_batch, num_parallel_calls=autotune, deterministic=config.deterministic)
    elif stored:  # the cache holds uint8 (4x less memory); cast per batch
        ds = ds.map(_to_float, num_parallel_calls=autotune, deterministic=config.deterministic)
    if config.augment_flip or config.augment_crop or config.augment_brightness:
        if len(info.feature_shape) != 3:
            raise ConfigError(
                f"InputConfig augmentation needs images (height, width, channels); "
                f"{info.path} has feature shape {tuple(info.feature_shape)}"
            )
        seeds = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, seeds.batch(2))).map(
            _augmenter(config, 255.0 if info.feature_dtype == "uint8" else 1.0),
            num_parallel_calls=autotune,
            deterministic=config.deterministic,
        )
    options = tf.data.Options()
    options.deterministic = config.deterministic
    policy = auto_shard_policy(len(files), _num_workers(config), config.auto_shard)
    options.experimental_distribute.auto_shard_policy = getattr(
        tf.data.experimental.AutoShardPolicy, policy
    )
    return ds.with_options(options).prefetch(autotune)


def _decode(records, info: DatasetInfo, config: InputConfig):
    """Serialized records -> single ``(x as stored, label)`` examples (parsed in batches)."""
    from tfopt._keras import tf

    parse = _parser(info, cast=False)
    return (
        records.batch(1024)
        .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=config.deterministic)
        .unbatch()
    )


def _cache(ds, cached: str):
    if cached == "none":
        return ds
    if cached != "memory":
        os.makedirs(os.path.dirname(os.path.abspath(cached)), exist_ok=True)
    return ds.cache() if cached == "memory" else ds.cache(cached)


def examples(info: DatasetInfo, split: str, config: InputConfig = InputConfig()):
    """One split as a ``tf.data`` pipeline of single ``(x, label)`` examples, ``x`` as
    stored (uint8 images stay uint8: 4x less memory in a cache or a shuffle buffer; cast
    where the model is fed), in file order unless ``config.shuffle``.

    Cached as ``make_dataset`` caches (``config.cache``): memory stays within
    ``cache_budget_bytes`` whatever the split's size; batching is the caller's.
    """
    from tfopt._keras import tf

    ds = _cache(
        _decode(_records(info, split, config, None), info, config), cache_mode(info, split, config)
    )
    options = tf.data.Options()
    options.deterministic = config.deterministic
    return ds.with_options(options)


def _augmenter(config: InputConfig, pixel_range: float):
    """Vectorized per-image augmentation of a float32 batch, seeded per batch."""
    from tfopt._keras import tf

    pad = config.augment_crop

    def augment(batch, seed):
        (x, y), seed = batch, tf.cast(seed, tf.int64)
        n = tf.shape(x)[0]
        if config.augment_flip:
            x = tf.image.stateless_random_flip_left_right(x, seed)
        if pad:
            h, w = x.shape[1], x.shape[2]
            padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="SYMMETRIC")
            off = tf.random.stateless_uniform([n, 2], seed + 1, 0, 2 * pad + 1, tf.int32)
            off = tf.cast(off, tf.float32)
            hp, wp = float(h + 2 * pad - 1), float(w + 2 * pad - 1)
            boxes = tf.stack(
                [
                    off[:, 0] / hp,
                    off[:, 1] / wp,
                    (off[:, 0] + h - 1) / hp,
                    (off[:, 1] + w - 1) / wp,
                ],
                axis=1,
            )  # pixel-aligned boxes: crop_and_resize copies the pixels exactly
            x = tf.image.crop_and_resize(padded, boxes, tf.range(n), [h, w])
        if config.augment_brightness:
            b = config.augment_brightness * pixel_range
            delta = tf.random.stateless_uniform([n, 1, 1, 1], seed + 2, -b, b)
            x = x + delta
            if pixel_range == 255.0:
                x = tf.clip_by_value(x, 0.0, 255.0)
        return x, y

    return augment


def iter_arrays(
    info: DatasetInfo, split: str, batch_size: int = 1024, limit: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream one split as NumPy ``(x, y)`` batches in file order (memory: one batch).

    Use this for evaluation of splits of any size.
    """
    from tfopt.data.integrity import reporting_corruption

    config = InputConfig(batch_size=batch_size, cache="none", auto_shard="off")
    with reporting_corruption(info, [split]):
        yield from make_dataset(info, split, config, limit=limit).as_numpy_iterator()


def load_arrays(
    info: DatasetInfo,
    split: str,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One split (or its first ``limit`` examples) as NumPy arrays.

    Holds the whole result in memory: pass ``limit`` for large splits, or
    stream with :func:`iter_arrays`.
    """
    xs, ys = [], []
    for x, y in iter_arrays(info, split, limit=limit):
        xs.append(x)
        ys.append(y)
    if not xs:
        raise DataError(f"{info.path}: split {split!r} is empty")
    return np.concatenate(xs), np.concatenate(ys)


def representative_samples(
    info: DatasetInfo, split: str = "train", limit: int = 200, seed: int = 0
) -> Iterator[list[np.ndarray]]:
    """A bounded calibration sample for int8 conversion: a generator of ``[x]``
    with ``x`` float32 of shape ``[1, *feature_shape]``.

    Reads all shards round-robin and shuffles in a buffer of at most
    ``4 * limit`` examples, so the sample spans the whole split while memory
    stays bounded. Use as
    ``converter.representative_dataset = lambda: representative_samples(info, limit=200)``.
    """
    check_int("representative_samples", "limit", limit, 1, 1_000_000)
    from tfopt._keras import tf

    files = info.files(split)
    config = InputConfig(shuffle=True, seed=seed, cache="none")
    ds = _records(info, split, config, None, cycle_length=len(files))
    ds = ds.shuffle(min(4 * limit, max(info.counts[split], 1)), seed=seed).take(limit)
    ds = ds.batch(256).map(_parser(info)).prefetch(tf.data.AUTOTUNE)
    for x, _ in ds.as_numpy_iterator():
        for i in range(len(x)):
            yield [x[i : i + 1]]
