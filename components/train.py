"""Train component: dataset artifact -> SavedModel (serving_default) + metrics."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def train(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    tensorboard: Output[Artifact],
    hyperparameters: Input[Artifact] = None,
    arch: str = "cnn",
    width: int = 32,
    depth: int = 2,
    dropout: float = 0.1,
    optimizer: str = "adam",
    learning_rate: float = 0.001,
    scale_learning_rate: bool = False,
    epochs: int = 30,
    batch_size: int = 64,
    early_stopping_patience: int = 5,
    seed: int = 42,
    precision: str = "float32",
    xla: bool = False,
    profile_batches: str = "",
    backup_dir: str = "",
):
    """Train a classifier with the strategy the cluster allows; save a SavedModel."""
    from tfopt.components import _util
    from tfopt.training import train as train_lib

    config = _util.train_config(
        hyperparameters,
        arch=arch,
        width=width,
        depth=depth,
        dropout=dropout,
        optimizer=optimizer,
        learning_rate=learning_rate,
        scale_learning_rate=scale_learning_rate,
        epochs=epochs,
        batch_size=batch_size,
        early_stopping_patience=early_stopping_patience,
        seed=seed,
        precision=precision,
        xla=xla,
        profile_batches=profile_batches,
    )
    result = train_lib.train_model(
        dataset.path,
        model.path,
        config,
        backup_dir=backup_dir or None,
        tensorboard_dir=tensorboard.path,
    )
    _util.log_metrics(
        metrics,
        {
            **result.metrics,
            "epochs_run": result.epochs_run,
            "params": result.params,
            "replicas": result.replicas,
        },
    )
    model.metadata.update(
        {
            "variant": "baseline",
            "format": "saved_model",
            "params": result.params,
            "strategy": result.strategy,
        }
    )
