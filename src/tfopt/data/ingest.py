"""Ingest: any source -> sharded TFRecords + ``schema.json``.

Ingest streams: memory stays bounded by the shuffle window and chunk size
whatever the size of the source. Splits are seeded and stratified per class.

The parts: :mod:`tfopt.data.ingest_config` (the config), :mod:`tfopt.data.sources`
(which reader a source names), :mod:`tfopt.data.split_writer` (split assignment, shards,
schema).
"""

from __future__ import annotations

import logging

from tfopt import fsutil
from tfopt.data.ingest_config import IngestConfig
from tfopt.data.schema import DatasetInfo
from tfopt.data.sources import read_source
from tfopt.data.split_writer import SplitWriter

__all__ = ["IngestConfig", "ingest"]

log = logging.getLogger(__name__)


def ingest(output_dir: str, config: IngestConfig = IngestConfig()) -> DatasetInfo:
    """Read ``config.source``, split it and write the dataset artifact to ``output_dir``.

    The directory appears only when everything was read, checked and written.
    """
    meta: dict = {}
    chunks = read_source(config, meta)
    with fsutil.atomic_dir(output_dir) as tmp:
        writer = SplitWriter(tmp, config)
        for chunk in chunks:
            writer.add(chunk)
        info = writer.close(name=config.source, final_path=output_dir, meta=meta)
    log.info("ingested %s: %s", config.source, info.counts)
    return info
