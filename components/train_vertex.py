"""Train launcher for Vertex AI: a custom job with chief and worker pools."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.launch.validate import TrainingRequest
from tfopt.launch.vertex_job import VertexJobConfig


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(TrainingRequest, VertexJobConfig)
def train_vertex(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    project: str,
    location: str,
    staging_bucket: str,
    hyperparameters: Input[Artifact] = None,
    train_config: dict = {},  # noqa: B006 - TrainConfig fields, flat; a KFP default, never mutated
    replicas: int = 2,
    gpus_per_replica: int = 1,
    accelerator_type: str = "NVIDIA_TESLA_T4",
    machine_type: str = "n1-standard-8",
    timeout_s: int = 21600,
    service_account: str = "",
) -> str:
    """Run training as a Vertex AI custom job, wait for it; return the model URI.

    Args:
        model: The trained model (SavedModel with serving_default).
        metrics: The figures the job's chief reported, and the replicas.
        project: GCP project of the custom job.
        location: Vertex AI region of the custom job (e.g. us-central1).
        staging_bucket: gs:// directory the job stages its files in.
        service_account: Service account e-mail the job runs as ('' = Vertex's default).
    """
    from dataclasses import asdict

    from tfopt.components import _image, _util
    from tfopt.launch import validate, vertex_job

    request = validate.TrainingRequest("vertex", replicas, gpus_per_replica, accelerator_type)
    config = _util.train_config(hyperparameters, train_config)
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
