"""Low-rank component: SavedModel -> SVD-factorized, fine-tuned SavedModel + metrics."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def lowrank(
    model: Input[Model],
    dataset: Input[Dataset],
    lowrank_model: Output[Model],
    metrics: Output[Metrics],
    tensorboard: Output[Artifact],
    variant: str = "lowrank",
    rank: int = 0,
    energy: float = 0.9,
    layers: str = "",
    epochs: int = 5,
    batch_size: int = 64,
    learning_rate: float = 0.0005,
    seed: int = 42,
    enabled: bool = True,
):
    """Factorize Dense / 1x1 Conv kernels (rank 0: by retained ``energy``); fine-tune."""
    from tfopt.components import _util

    if _util.skip_if_disabled(lowrank_model, variant, enabled, model, also=(metrics, tensorboard)):
        return
    from tfopt.compression import lowrank as lowrank_lib

    config = lowrank_lib.LowRankConfig(
        rank=rank,
        energy=energy,
        layers=layers,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
    )
    with _util.skip_when_not_applicable(
        lowrank_model, variant, "saved_model", also=(metrics, tensorboard)
    ):
        result = lowrank_lib.factorize_model(
            model.path, dataset.path, lowrank_model.path, config, tensorboard_dir=tensorboard.path
        )
        _util.log_metrics(
            metrics,
            {
                **result.metrics,
                "params": result.params_after,
                "params_before": result.params_before,
                "factorized_reduction": result.factorized_reduction,
                "factorized_param_fraction": result.factorized_param_fraction,
            },
        )
        _util.describe_model(
            lowrank_model,
            variant,
            "saved_model",
            base=model,
            params=result.params_after,
            sparsity=0.0,
            layers=result.layers,
            factorized_param_fraction=result.factorized_param_fraction,
            notes=result.notes,
        )
