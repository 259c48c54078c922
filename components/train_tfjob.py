"""Train launcher for Kubeflow: a TFJob (chief + workers) of the GPU image."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.launch.tfjob import TFJobConfig
from tfopt.launch.validate import TrainingRequest


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(TrainingRequest, TFJobConfig)
def train_tfjob(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    hyperparameters: Input[Artifact] = None,
    train_config: dict = {},  # noqa: B006 - TrainConfig fields, flat; a KFP default, never mutated
    replicas: int = 2,
    gpus_per_replica: int = 1,
    accelerator_type: str = "NVIDIA_TESLA_T4",
    namespace: str = "kubeflow",
    cpu: str = "4",
    memory: str = "16Gi",
    timeout_s: int = 21600,
) -> str:
    """Run training as a TFJob, wait for it (logs, timeout, cleanup); return the model URI.

    Args:
        model: The trained model (SavedModel with serving_default).
        metrics: The figures the job's chief reported, and the replicas.
    """
    from dataclasses import asdict

    from tfopt.components import _image, _util
    from tfopt.launch import tfjob, validate

    request = validate.TrainingRequest("tfjob", replicas, gpus_per_replica, accelerator_type)
    config = _util.train_config(hyperparameters, train_config)
    result = tfjob.train_on_kubeflow(
        dataset.uri,
        model.uri,
        asdict(config),
        request,
        _image.GPU_IMAGE,
        namespace=namespace,
        cpu=cpu,
        memory=memory,
        timeout_s=timeout_s,
    )
    _util.log_metrics(metrics, {**result.get("metrics", {}), "replicas": result.get("replicas", 0)})
    model.metadata.update(
        {
            "variant": "baseline",
            "format": "saved_model",
            "target": "tfjob",
            "params": result.get("params", 0),
        }
    )
    return model.uri
