"""Weight clustering with tfmot: each kernel keeps at most ``cluster_count`` distinct values.

``cluster_model`` loads any tf_keras SavedModel, copies it (the input is never modified;
nested models flattened), wraps the clusterable layers (Dense and Conv kernels:
tfmot does not cluster DepthwiseConv2D) except those kept dense, initialises the
centroids (k-means++ by default), fine-tunes the centroids on the train split, strips the
clustering wrappers and saves a plain SavedModel whose kernels hold only the centroid
values. Like pruning, it makes a smaller compressed file (gzip, or int8 TFLite that
keeps the shared values), not a faster model; ``qat`` with ``preserve_clusters`` keeps
the clusters through quantization-aware training (``cqat_int8``).
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt import registry
from tfopt._keras import keras
from tfopt.compression.common import (
    AUTO,
    Searchable,
    batch_size_setting,
    check_with_names,
    finetune,
    kept_dense,
    kernel_of,
    learning_rate_setting,
    load_for_compression,
    model_sparsity,
    seed_setting,
)
from tfopt.errors import ModelError
from tfopt.settings import setting
from tfopt.training import models

log = logging.getLogger(__name__)

# tfmot's CentroidInitialization, by setting value
CENTROID_INITS = ("kmeans_plus_plus", "density_based", "linear", "random")


@dataclass(frozen=True)
class ClusterConfig(Searchable):
    """How to cluster: each field is a setting (``tfopt.settings``), described where declared."""

    cluster_count: int = setting(
        16,
        "Distinct values each clustered kernel keeps (fewer: smaller compressed file, more "
        "accuracy lost). At most 1024, the most cluster-preserving QAT keeps.",
        low=2,
        high=1024,
        param="cluster_count",
        search=(64, 4),
    )
    centroids_init: str = setting(
        "kmeans_plus_plus",
        "How the centroids start: kmeans_plus_plus, density_based (evenly over the weights' "
        "distribution), linear (evenly between min and max) or random.",
        choices=CENTROID_INITS,
    )
    keep_dense: tuple[str, ...] = setting(
        AUTO,
        "Comma-separated names of layers left unclustered; 'auto' = the first conv layer "
        "and the output layer; '' clusters every clusterable layer.",
    )
    epochs: int = setting(
        2,
        "Fine-tuning epochs of the centroids (0: none, the initial centroids are kept).",
        low=0,
        high=100_000,
        param="cluster_epochs",
    )
    batch_size: int = batch_size_setting()
    learning_rate: float = learning_rate_setting(1e-4)
    seed: int = seed_setting()

    def __post_init__(self):
        check_with_names(self, "keep_dense")


@dataclass(frozen=True)
class ClusterResult:
    """What clustering reached.

    Attributes:
        unique_values: distinct values of each clustered kernel (at most ``cluster_count``).
        clustered_param_fraction: share of the model's parameters in clustered kernels.
        gzip_bytes_before / gzip_bytes_after: every weight as float32 bytes, gzipped, before
            and after (what clustering saves in a compressed download).
    """

    model_path: str
    cluster_count: int
    clustered_layers: list[str]
    dense_layers: list[str]
    unique_values: dict[str, int]
    params: int
    clustered_param_fraction: float
    sparsity: float
    gzip_bytes_before: int
    gzip_bytes_after: int
    metrics: dict
    notes: list[str] = field(default_factory=list)

    @property
    def gzip_reduction(self) -> float:
        """How many times smaller the gzipped weights are."""
        return self.gzip_bytes_before / max(self.gzip_bytes_after, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "gzip_reduction": self.gzip_reduction}


def weights_gzip_bytes(model: keras.Model) -> int:
    """Size after gzip (level 9) of every weight of ``model`` as raw float32 bytes: what
    repeated values (clusters) and zeros (pruning) save in a compressed download."""
    raw = b"".join(np.asarray(w, np.float32).tobytes() for w in model.get_weights())
    return len(gzip.compress(raw, compresslevel=9, mtime=0))


def _why_not(layer, config: ClusterConfig) -> str:
    """Why tfmot does not cluster ``layer`` (its kernel), or "" when it does."""
    from tensorflow_model_optimization.python.core.clustering.keras.clustering_registry import (
        ClusteringRegistry,
    )

    kernel = kernel_of(layer)
    if kernel is None:
        return "no kernel (passes through)"
    if not ClusteringRegistry._LAYERS_WEIGHTS_MAP.get(type(layer)):
        return f"{type(layer).__name__} has no weights tfmot's clustering registry clusters"
    size = int(np.prod(kernel.shape))
    if size <= config.cluster_count:
        return f"kernel of {size} weights: not more than cluster_count={config.cluster_count}"
    return ""


def clusterability(model: keras.Model, config: ClusterConfig) -> dict[str, tuple[bool, str]]:
    """Per layer (input layers aside): whether clustering with ``config`` clusters it, and
    why not (``Technique.plan``)."""
    keep = kept_dense(model, config.keep_dense, "ClusterConfig")
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        why = _why_not(layer, config)
        if not why and layer.name in keep:
            why = f"kept dense (keep_dense={','.join(config.keep_dense)})"
        out[layer.name] = (not why, why)
    return out


def plan_layers(model: keras.Model, config: ClusterConfig) -> tuple[list[str], list[str]]:
    """(layers to cluster, clusterable layers kept dense); fails when nothing would be
    clustered."""
    answers = clusterability(model, config)
    chosen = [name for name, (ok, _) in answers.items() if ok]
    kept = [n for n, (_, why) in answers.items() if why.startswith("kept dense")]
    if not chosen:
        reasons = sorted({why for ok, why in answers.values() if not ok})
        raise ModelError(
            f"the model has no layer to cluster (kept dense: {kept or 'none'}; "
            f"reasons: {'; '.join(reasons)})"
        )
    return chosen, kept


def cluster_model(
    model_path: str,
    dataset_dir: str,
    output_path: str,
    config: ClusterConfig = ClusterConfig(),
    tensorboard_dir: str | None = None,
) -> ClusterResult:
    """Cluster, fine-tune, strip and save; the model at ``model_path`` is only read."""
    import tensorflow_model_optimization as tfmot

    clustering = tfmot.clustering.keras
    model, info = load_for_compression(model_path, dataset_dir, "cluster")
    chosen, kept = plan_layers(model, config)
    gzip_before = weights_gzip_bytes(model)  # before fine-tuning changes shared layers
    init = clustering.CentroidInitialization[config.centroids_init.upper()]
    keras.utils.set_random_seed(config.seed)  # k-means++ and random draw their centroids

    def wrap(layer):
        if layer.name in chosen:
            return clustering.cluster_weights(
                layer, number_of_clusters=config.cluster_count, cluster_centroids_init=init
            )
        return layer  # layers of the private copy: their weights are kept as they are

    try:
        wrapped = keras.models.clone_model(model, clone_function=wrap)
    except ValueError as exc:
        raise ModelError(f"cluster: cannot wrap the model for clustering ({exc})") from None
    log.info("clustering %s to %d values each, kept dense: %s", chosen, config.cluster_count, kept)
    metrics = {}
    if config.epochs:
        metrics = finetune(
            wrapped,
            info,
            config.epochs,
            config.batch_size,
            config.learning_rate,
            config.seed,
            tensorboard_dir=tensorboard_dir,
        )
    stripped = clustering.strip_clustering(wrapped)
    models.save_for_dataset(stripped, output_path, info)
    kernels = {n: kernel_of(stripped.get_layer(n)) for n in chosen}
    unique = {n: int(np.unique(k.numpy()).size) for n, k in kernels.items() if k is not None}
    notes = []
    over = {n: u for n, u in unique.items() if u > config.cluster_count}
    if over:  # tfmot keeps at most cluster_count values: this would be a bug
        notes.append(f"kernels with more than {config.cluster_count} values: {over}")
    params = models.count_params(stripped)
    clustered = sum(int(np.prod(k.shape)) for k in kernels.values() if k is not None)
    result = ClusterResult(
        model_path=output_path,
        cluster_count=config.cluster_count,
        clustered_layers=chosen,
        dense_layers=kept,
        unique_values=unique,
        params=params,
        clustered_param_fraction=clustered / max(params, 1),
        sparsity=model_sparsity(stripped),
        gzip_bytes_before=gzip_before,
        gzip_bytes_after=weights_gzip_bytes(stripped),
        metrics=metrics,
        notes=notes,
    )
    log.info(
        "clustered: values per kernel %s, gzipped weights %d -> %d bytes (%.2fx)",
        unique,
        result.gzip_bytes_before,
        result.gzip_bytes_after,
        result.gzip_reduction,
    )
    return result


def apply(model_dir, dataset_dir, output_path, config, tensorboard_dir=None) -> registry.Outcome:
    """The technique's entry point (``tfopt.registry.Technique.apply``)."""
    r = cluster_model(model_dir, dataset_dir, output_path, config, tensorboard_dir)
    return registry.Outcome(
        metrics={
            **r.metrics,
            "params": r.params,
            "clustered_param_fraction": r.clustered_param_fraction,
            "max_unique_values": max(r.unique_values.values()),
            "gzip_bytes_before": r.gzip_bytes_before,
            "gzip_bytes_after": r.gzip_bytes_after,
            "gzip_reduction": r.gzip_reduction,
            **{f"unique_values.{k}": v for k, v in r.unique_values.items()},
        },
        model={
            "params": r.params,
            "sparsity": r.sparsity,
            "cluster_count": r.cluster_count,
            "unique_values": r.unique_values,
            "clustered_param_fraction": r.clustered_param_fraction,
            "gzip_reduction": r.gzip_reduction,
        },
        notes=r.notes,
    )


TECHNIQUE = registry.register(
    registry.Technique(
        name="cluster",
        summary="Weight clustering (tfmot): each kernel keeps at most cluster_count shared "
        "values, fine-tuned; a smaller gzip file, not a faster model.",
        config=ClusterConfig,
        apply=apply,
        # off by default: the default run stays as fast as before
        variants=(
            registry.Variant(
                "clustered", "cluster", switch="enable_clustering", task="cluster", default=False
            ),
            registry.Variant(
                "clustered_int8", "tflite", base="clustered", settings={"mode": "int8"}
            ),
            registry.Variant(
                "cqat_int8",
                "qat",
                base="clustered",
                switch="enable_qat",
                settings={"preserve_clusters": True},
            ),
        ),
        trains=True,
        needs_keras=True,
        improves=(),
        limits="clustered weights are stored and computed as floats: fewer clusters shrink "
        "the gzip size only, not the file's bytes nor its multiply-adds",
        plan=clusterability,
    )
)
