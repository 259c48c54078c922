"""Which reader a source names: ``builtin:...``, IDX and image folders, ``.npz``, ``.csv``,
TFRecord files (:func:`read_source`), and the checks on its layout that run before any work.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from tfopt import fsutil
from tfopt.data import idx, images, readers, subset
from tfopt.data.ingest_config import IngestConfig
from tfopt.data.schema import SCHEMA_FILE, SCHEMA_FORMAT
from tfopt.errors import ConfigError, DataError


def read_source(config: IngestConfig, meta: dict) -> Iterator[readers.Chunk]:
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
    files = tfrecord_files(src)
    shape_known, dtype = tfopt_dataset_feature(src)
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


def tfrecord_files(src: str) -> list[str]:
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


def tfopt_dataset_feature(src: str) -> tuple[tuple[int, ...] | None, str]:
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
