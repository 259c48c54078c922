"""Name the damaged shard when a dataset artifact's records fail their checksums.

TFRecord keeps a CRC per record, so damage done to a dataset after ingest (a bit
flip on disk or in a copy, a truncated upload) surfaces deep inside ``tf.data``
as ``DataLossError: corrupted record at 192792``, naming neither the file nor
what to do. Steps that read a dataset wrap the reading in :func:`reporting_corruption`,
which finds the shard by re-reading each one and raises a ``DataError`` naming it.
"""

from __future__ import annotations

import contextlib
import re

from tfopt.errors import DataError


def _short(message: str) -> str:
    """TensorFlow's last line without the op and function decorations around it."""
    line = message.strip().splitlines()[-1].split("}}")[-1]
    return re.sub(r"\s*\[Op:.*$", "", line).strip()


def find_corrupt_shard(info, splits=None) -> tuple[str, str] | None:
    """(shard path, TensorFlow's message) of the first shard whose records fail, or None."""
    from tfopt._keras import tf

    for split in splits or list(info.shards):
        for path in info.files(split):
            try:
                for _ in tf.data.TFRecordDataset(path, buffer_size=1 << 20):
                    pass
            except tf.errors.DataLossError as exc:
                return path, _short(exc.message)
    return None


@contextlib.contextmanager
def reporting_corruption(info, splits=None):
    """Turn a ``DataLossError`` raised while reading ``info``'s ``splits`` into a ``DataError``."""
    from tfopt._keras import tf

    try:
        yield
    except tf.errors.DataLossError as exc:
        found = find_corrupt_shard(info, splits)
        where, what = found if found else (info.path, _short(exc.message))
        raise DataError(
            f"{where}: the dataset is damaged ({what}); it changed after ingest "
            "wrote it: run ingest again"
        ) from None
