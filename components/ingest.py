"""Ingest component: any source -> dataset artifact (TFRecord shards + schema.json)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.data.ingest import IngestConfig


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(IngestConfig)
def ingest(
    dataset: Output[Dataset],
    source: str = "builtin:digits",
    label_column: str = "label",
    feature_shape: str = "",
    num_classes: int = 0,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    seed: int = 42,
    shard_size: int = 50000,
    synthetic_examples: int = 1797,
    max_examples: int = 0,
    image_size: str = "",
    channels: int = 0,
    skip_corrupt_images: bool = False,
    force_classification: bool = False,
):
    """Read a source, split it (seeded, stratified) and write sharded TFRecords.

    Args:
        dataset: The dataset written: TFRecord shards per split (train, validation,
            test) and schema.json.
        feature_shape: Shape of one example as comma-separated integers (e.g. '28,28,1')
            when the source cannot tell (CSV, TFRecord); '' = the source's own.
        image_size: Image folders: 'height,width' the images are resized to at ingest;
            '' keeps their size, which they must then share.
    """
    from tfopt.components import _util
    from tfopt.data import ingest as ingest_lib

    config = ingest_lib.IngestConfig(
        source=source,
        label_column=label_column,
        feature_shape=_util.parse_shape(feature_shape),
        num_classes=num_classes,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        seed=seed,
        shard_size=shard_size,
        synthetic_examples=synthetic_examples,
        max_examples=max_examples,
        image_size=_util.parse_shape(image_size),
        channels=channels,
        skip_corrupt_images=skip_corrupt_images,
        force_classification=force_classification,
    )
    info = ingest_lib.ingest(dataset.path, config)
    dataset.metadata.update(
        {
            **info.to_summary(),
            "content_sha256": info.content_sha256,
            "feature_shape": list(info.feature_shape),
            "feature_dtype": info.feature_dtype,
        }
    )
