"""Train launcher for Vertex AI: a custom job with chief and worker pools."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def train_vertex(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    project: str,
    location: str,
    staging_bucket: str,
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
    replicas: int = 2,
    gpus_per_replica: int = 1,
    accelerator_type: str = "NVIDIA_TESLA_T4",
    machine_type: str = "n1-standard-8",
    timeout_s: int = 21600,
    service_account: str = "",
) -> str:
    """Run training as a Vertex AI custom job, wait for it; return the model URI."""
    from dataclasses import asdict

    from tfopt.components import _image, _util
    from tfopt.launch import validate, vertex_job

    request = validate.TrainingRequest("vertex", replicas, gpus_per_replica, accelerator_type)
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
    )
    result = vertex_job.train_on_vertex(
        dataset.uri,
        model.uri,
        asdict(config),
        request,
        _image.GPU_IMAGE,
        project,
        location,
        staging_bucket,
        machine_type=machine_type,
        timeout_s=timeout_s,
        service_account=service_account,
    )
    _util.log_metrics(metrics, {**result.get("metrics", {}), "replicas": result.get("replicas", 0)})
    model.metadata.update(
        {
            "variant": "baseline",
            "format": "saved_model",
            "target": "vertex",
            "params": result.get("params", 0),
        }
    )
    return model.uri
