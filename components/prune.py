"""Prune component: SavedModel -> pruned (wrappers stripped) SavedModel + metrics."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def prune(
    model: Input[Model],
    dataset: Input[Dataset],
    pruned_model: Output[Model],
    metrics: Output[Metrics],
    tensorboard: Output[Artifact],
    variant: str = "pruned",
    target_sparsity: float = 0.8,
    schedule: str = "polynomial",
    structured_2_4: bool = False,
    keep_dense: str = "auto",
    epochs: int = 6,
    batch_size: int = 64,
    learning_rate: float = 0.0005,
    seed: int = 42,
    enabled: bool = True,
):
    """Magnitude-prune ``model`` (keep_dense: comma-separated names, "auto" or "")."""
    from tfopt.components import _util

    if _util.skip_if_disabled(pruned_model, variant, enabled, model, also=(metrics, tensorboard)):
        return
    from tfopt.compression import prune as prune_lib

    config = prune_lib.PruneConfig(
        target_sparsity=target_sparsity,
        schedule=schedule,
        structured_2_4=structured_2_4,
        keep_dense=keep_dense,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
    )
    with _util.skip_when_not_applicable(
        pruned_model, variant, "saved_model", also=(metrics, tensorboard)
    ):
        result = prune_lib.prune_model(
            model.path, dataset.path, pruned_model.path, config, tensorboard_dir=tensorboard.path
        )
        _util.log_metrics(
            metrics,
            {
                **result.metrics,
                "sparsity": result.sparsity,
                "model_sparsity": result.model_sparsity,
                "params": result.params,
                "pruned_param_fraction": result.pruned_param_fraction,
                **{f"sparsity.{k}": v for k, v in result.layer_sparsity.items()},
            },
        )
        _util.describe_model(
            pruned_model,
            variant,
            "saved_model",
            base=model,
            params=result.params,
            sparsity=result.model_sparsity,
            pruned_sparsity=result.sparsity,
            layer_sparsity=result.layer_sparsity,
            pruned_param_fraction=result.pruned_param_fraction,
            notes=result.notes,
        )
