"""Validate-data component: resolve the champion and check this run's data against the
data it was trained on, and against the schema, before any training.

The run stops here (the step fails, naming the feature and the distance) when the data
drifted past a threshold, a class disappeared or the schema changed, unless
``accept_drift``. The champion it finds goes to ``evaluate`` in ``validation``.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.data.drift import DriftConfig


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(DriftConfig)
def validate_data(
    dataset: Input[Dataset],
    validation: Output[Artifact],
    report: Output[Markdown],
    deploy_target: str = "tf_serving",
    serving_base_path: str = "",
    model_name: str = "tfopt-model",
    champion_uri: str = "",
    project: str = "",
    region: str = "",
    endpoint_display_name: str = "tfopt-endpoint",
    drift_linf_threshold: float = 0.1,
    drift_js_threshold: float = 0.1,
    accept_drift: bool = False,
):
    """Find the champion; compare this run's data statistics with its training data's.

    Args:
        validation: The champion found and the comparison (JSON), read by evaluate.
        report: The comparison (Markdown).
        deploy_target: Where the champion is served: tf_serving, vertex (others: none).
        serving_base_path: The TF Serving repository; its stable version is the champion.
        model_name: The model's name in the repository.
        champion_uri: A SavedModel directory (local or gs://) to compare the candidates with
            as the champion; '' = the model the deploy target serves (the TF Serving
            repository's stable version, the Vertex AI endpoint's model); 'none' = none.
        project: Vertex AI project (deploy_target vertex).
        region: Vertex AI region (deploy_target vertex).
        endpoint_display_name: The Vertex AI endpoint whose model is the champion.
    """
    from tfopt.components import _validate_data

    _validate_data.run(
        dataset,
        validation,
        report,
        {
            "deploy_target": deploy_target,
            "serving_base_path": serving_base_path,
            "model_name": model_name,
            "champion_uri": champion_uri,
            "project": project,
            "region": region,
            "endpoint_display_name": endpoint_display_name,
        },
        {
            "drift_linf_threshold": drift_linf_threshold,
            "drift_js_threshold": drift_js_threshold,
            "accept_drift": accept_drift,
        },
    )
