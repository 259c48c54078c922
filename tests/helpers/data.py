"""Shared helpers for the data tests (tests/unit/test_data_*.py; plain functions, no fixtures)."""

from __future__ import annotations

import os

import numpy as np

from tfopt._keras import tf
from tfopt.data import ingest, input_pipeline, schema


def write_csv(
    path, x: np.ndarray, y: np.ndarray, label_column: str = "label", label_at: int = 0
) -> str:
    """A CSV with a header; the label column sits at position ``label_at``."""
    flat = x.reshape(len(x), -1)
    names = [f"f{i}" for i in range(flat.shape[1])]
    names.insert(label_at, label_column)
    with open(path, "w") as fh:
        fh.write(",".join(names) + "\n")
        for row, label in zip(flat, y, strict=True):
            cells = [repr(float(v)) for v in row]
            cells.insert(label_at, str(int(label)))
            fh.write(",".join(cells) + "\n")
    return str(path)


def write_foreign_tfrecord(
    path, x: np.ndarray, y: np.ndarray, feature: str = "pixels", label: str = "digit"
) -> str:
    """Examples as another tool writes them: a float_list feature and an int64 label."""
    with tf.io.TFRecordWriter(str(path)) as w:
        for row, lab in zip(x.reshape(len(x), -1), y, strict=True):
            ex = tf.train.Example(
                features=tf.train.Features(
                    feature={
                        feature: tf.train.Feature(
                            float_list=tf.train.FloatList(value=row.tolist())
                        ),
                        label: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(lab)])),
                    }
                )
            )
            w.write(ex.SerializeToString())
    return str(path)


def toy_arrays(n: int = 200, shape=(2, 3), classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = (rng.normal(size=(n, *shape)) + y.reshape(-1, *([1] * len(shape)))).astype(np.float32)
    return x, y.astype(np.int64)


def all_examples(info: schema.DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for split in schema.SPLITS:
        if info.counts[split]:
            x, y = input_pipeline.load_arrays(info, split)
            xs.append(x)
            ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def canonical(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows (label, features...) sorted, to compare multisets of examples."""
    rows = np.concatenate(
        [y.reshape(-1, 1).astype(np.float64), x.reshape(len(x), -1).astype(np.float64)], axis=1
    )
    return rows[np.lexsort(rows.T[::-1])]


def listing(path) -> list[str]:
    return sorted(os.listdir(path))


def synthetic_images(path: str, examples: int, shape: tuple[int, ...], classes: int) -> str:
    """Ingest a seeded ``builtin:synthetic`` image dataset into ``path``; returns ``path``."""
    ingest.ingest(
        path,
        ingest.IngestConfig(
            source="builtin:synthetic",
            synthetic_examples=examples,
            synthetic_shape=shape,
            synthetic_classes=classes,
        ),
    )
    return path
