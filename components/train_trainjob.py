"""Train launcher for Kubeflow Trainer v2: a TrainJob on the tfopt-tensorflow runtime."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.launch.jobset import ClusterJobConfig
from tfopt.launch.validate import TrainingRequest


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(TrainingRequest, ClusterJobConfig)
def train_trainjob(
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
    queue_name: str = "",
    node_selector: dict = {},  # noqa: B006 - a KFP default, never mutated
    tolerations: list = [],  # noqa: B006 - a KFP default, never mutated
) -> str:
    """Run training as a Trainer v2 TrainJob, wait (logs, timeout, cleanup); return the model URI.

    The TrainJob references the ``tfopt-tensorflow`` ClusterTrainingRuntime
    (``src/tfopt/launch/manifests/tensorflow-runtime.yaml``, installed once per cluster).

    ``queue_name`` labels the job for a Kueue LocalQueue (GPU quota, fair sharing);
    ``node_selector`` and ``tolerations`` add to the GPU node selector and toleration.

    Args:
        model: The trained model (SavedModel with serving_default).
        metrics: The figures the job's chief reported, and the replicas.
    """
    from tfopt.components import _util
    from tfopt.launch import validate

    request = validate.TrainingRequest("trainjob", replicas, gpus_per_replica, accelerator_type)
    return _util.train_on_kubernetes(
        "trainjob",
        dataset,
        model,
        metrics,
        hyperparameters,
        train_config,
        request,
        namespace=namespace,
        cpu=cpu,
        memory=memory,
        timeout_s=timeout_s,
        queue_name=queue_name,
        node_selector=dict(node_selector),
        tolerations=tuple(tolerations),
    )
