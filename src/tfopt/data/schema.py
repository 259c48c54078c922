"""The dataset artifact: its ``schema.json`` and :class:`DatasetInfo`.

The dataset artifact is a directory::

    schema.json
    train-00000-of-00002.tfrecord ...
    validation-00000-of-00001.tfrecord
    test-00000-of-00001.tfrecord

Each record is a ``tf.train.Example`` with ``x`` (the feature bytes, shape and
dtype in the schema) and ``label`` (int64).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field

from tfopt import fsutil
from tfopt.errors import DataError

log = logging.getLogger(__name__)


SPLITS = ("train", "validation", "test")
SCHEMA_FILE = "schema.json"
SCHEMA_FORMAT = "tfopt.dataset/v1"
FEATURE_KEY = "x"
LABEL_KEY = "label"
FEATURE_DTYPES = ("float32", "uint8")  # uint8: images, cast to float32 when read
_CORE_KEYS = ("format", "name", "feature", "label", "splits", "content_sha256")


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
    class_names: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    def files(self, split: str) -> list[str]:
        if split not in self.shards:
            raise DataError(f"{self.path}: no split {split!r}; splits: {', '.join(self.shards)}")
        return [os.path.join(self.path, s) for s in self.shards[split]]

    def to_summary(self) -> dict:
        return {
            "name": self.name,
            "num_train": self.counts.get("train", 0),
            "num_validation": self.counts.get("validation", 0),
            "num_test": self.counts.get("test", 0),
            "num_classes": self.num_classes,
            # the label vocabulary (image folders, Fashion-MNIST) rides along to the summary
            **({"class_names": list(self.class_names)} if self.class_names else {}),
        }


def write_schema(directory: str, info: DatasetInfo) -> None:
    payload = {
        "format": SCHEMA_FORMAT,
        "name": info.name,
        "feature": {
            "name": FEATURE_KEY,
            "shape": list(info.feature_shape),
            "dtype": info.feature_dtype,
        },
        "label": {
            "name": LABEL_KEY,
            "num_classes": info.num_classes,
            **({"vocabulary": list(info.class_names)} if info.class_names else {}),
        },
        "splits": {
            s: {
                "count": info.counts[s],
                "shards": info.shards[s],
                "class_counts": info.class_counts[s],
            }
            for s in info.counts
        },
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
            path=dataset_dir,
            name=raw["name"],
            feature_shape=tuple(raw["feature"]["shape"]),
            num_classes=int(raw["label"]["num_classes"]),
            counts={s: int(v["count"]) for s, v in raw["splits"].items()},
            shards={s: list(v["shards"]) for s, v in raw["splits"].items()},
            class_counts={s: list(v.get("class_counts", [])) for s, v in raw["splits"].items()},
            content_sha256=raw["content_sha256"],
            feature_dtype=raw["feature"]["dtype"],
            class_names=tuple(str(c) for c in raw["label"].get("vocabulary", ())),
            extra={k: v for k, v in raw.items() if k not in _CORE_KEYS},
        )
        if info.feature_dtype not in FEATURE_DTYPES:
            raise DataError(
                f"{path}: feature dtype {info.feature_dtype!r}; expected one of "
                f"{', '.join(FEATURE_DTYPES)}"
            )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: malformed schema ({type(exc).__name__}: {exc})") from None
    for split in info.shards:
        for f in info.files(split):
            if not fsutil.exists(f):
                raise DataError(
                    f"{dataset_dir}: shard {os.path.basename(f)} of split "
                    f"{split!r} is listed in {SCHEMA_FILE} but missing"
                )
    return info


def replace(info: DatasetInfo, **changes) -> DatasetInfo:
    return dataclasses.replace(info, **changes)
