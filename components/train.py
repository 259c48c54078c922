"""Train component: dataset artifact -> SavedModel (serving_default) + metrics.

The pre-flight report of the trained model is the ``inspect`` step's, off this step's path."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.training.train import TrainConfig


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(TrainConfig)
def train(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    tensorboard: Output[Artifact],
    hyperparameters: Input[Artifact] = None,
    train_config: dict = {},  # noqa: B006 - TrainConfig fields, flat; a KFP default, never mutated
    profile_batches: str = "",
    backup_dir: str = "",
):
    """Train a classifier with the strategy the cluster allows; save a SavedModel.

    Args:
        model: The trained model (SavedModel with serving_default).
        metrics: The best epoch's loss and accuracy, epochs run, parameters, replicas.
        tensorboard: TensorBoard logs of training.
        backup_dir: Where training backs up each epoch (e.g. gs://...): a retried or
            preempted step resumes from there; '' = beside the model output (removed
            on success).
    """
    from tfopt import model_info
    from tfopt.components import _util
    from tfopt.training import train as train_lib

    config = _util.train_config(
        hyperparameters,
        train_config,
        **({"profile_batches": profile_batches} if profile_batches else {}),
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
            "module_sha256": model_info.read_model_info(model.path).get("module_sha256", ""),
        }
    )
