"""Deploy to Vertex AI: upload a version, canary on an endpoint, smoke-test, promote or
roll back."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.deploy.vertex_config import DeployConfig
from tfopt.deploy.vertex_target import VertexTarget


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(DeployConfig, VertexTarget)
def deploy_vertex(
    model: Input[Model],
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    endpoint: Output[Artifact],
    project: str = "",
    region: str = "",
    model_display_name: str = "tfopt-model",
    endpoint_display_name: str = "tfopt-endpoint",
    machine_type: str = "n1-standard-2",
    accelerator_type: str = "",
    accelerator_count: int = 0,
    min_replica_count: int = 1,
    max_replica_count: int = 1,
    canary_percent: int = 10,
    smoke_samples: int = 4,
    service_account: str = "",
):
    """Upload ``model`` (a gs:// SavedModel) and roll it out as a canary; fail on rollback.

    Args:
        model: The model to deploy (a gs:// SavedModel; the selected model).
        metrics: Whether it was promoted, the smoke requests sent, the canary's answers.
        endpoint: The Vertex AI endpoint serving it (its resource name in the metadata).
        smoke_samples: Test-split examples sent to the canary in each smoke request.
    """
    from tfopt.components import _util
    from tfopt.data import input_pipeline, schema
    from tfopt.deploy import vertex

    config = vertex.DeployConfig(
        model_display_name=model_display_name,
        endpoint_display_name=endpoint_display_name,
        machine_type=machine_type,
        accelerator_type=accelerator_type,
        accelerator_count=accelerator_count,
        min_replica_count=min_replica_count,
        max_replica_count=max_replica_count,
        canary_percent=canary_percent,
        service_account=service_account,
        labels={"pipeline": "tfopt"},
    )
    target = vertex.VertexTarget(project=project, region=region).resolve()  # fail before data
    x, _ = input_pipeline.load_arrays(schema.load_info(dataset.path), "test", limit=smoke_samples)
    result = vertex.deploy_model(model.uri, x.tolist(), config, target)
    _util.log_metrics(
        metrics,
        {
            "promoted": int(result.promoted),
            "smoke_requests": result.smoke_requests,
            "canary_answers": result.canary_answers,
        },
    )
    endpoint.uri = (
        f"https://{result.endpoint.split('/')[3]}-aiplatform.googleapis.com/v1/{result.endpoint}"
    )
    endpoint.metadata.update({"resourceName": result.endpoint, **result.to_dict()})
    if not result.promoted:
        raise vertex.DeployError(f"canary rolled back: {result.reason}")
