"""What ingest reads and how it splits it (:class:`IngestConfig`)."""

from __future__ import annotations

from dataclasses import dataclass

from tfopt.checks import check_choice, check_float, check_int, check_str
from tfopt.data.schema import FEATURE_KEY, LABEL_KEY
from tfopt.errors import ConfigError


@dataclass(frozen=True)
class IngestConfig:
    """What to read and how to split it.

    Attributes:
        source: where the examples come from: ``builtin:digits``, ``builtin:fashion_mnist``,
            ``builtin:synthetic``, a ``.npz`` / ``.csv`` file, an image-folder or IDX
            directory, or TFRecord file(s) (a file, a directory or a glob); local or ``gs://``.
        label_column: label column (CSV) or int64 feature (TFRecord).
        feature_column: feature of foreign TFRecords (float list or raw float32 bytes).
        feature_shape: shape of one example when the source cannot tell (CSV, TFRecord).
        num_classes: number of classes; inferred as ``max(label) + 1`` when 0.
        validation_fraction: fraction of the examples in the validation split.
        test_fraction: fraction of the examples in the test split; a source with its
            own test split (``x_test`` in an ``.npz``) keeps it.
        seed: seeds the split assignment and the within-window shuffle.
        shard_size: examples per TFRecord shard.
        shuffle_window: examples shuffled together before writing (bounds memory).
        buffer_bytes: caps the shuffle window of each split in bytes of features,
            so large examples (images) keep memory bounded too.
        synthetic_examples / synthetic_shape / synthetic_classes: the examples, their
            shape and the classes ``builtin:synthetic`` generates.
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
