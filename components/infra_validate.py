"""Infra validation component: can the serving runtime load and serve the candidate?"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.deploy.serving.infravalidate import InfraValidationConfig


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(InfraValidationConfig)
def infra_validate(
    model: Input[Model],
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    model_name: str = "tfopt-model",
    num_examples: int = 16,
    latency_requests: int = 50,
    atol: float = 1e-5,
    load_timeout_s: float = 120.0,
) -> bool:
    """Load in the serving runtime, replay warmup, compare with offline, time it.

    Returns ``infra_blessed`` (a single value: KFP's local runner evaluates
    ``dsl.If`` only on outputs named ``Output``); the reason is in the metrics'
    metadata.

    Args:
        model: The candidate to validate (a SavedModel; the selected model).
        metrics: Load time, latency and the largest difference from offline predictions.
    """
    from tfopt.components import _util
    from tfopt.deploy.serving import infravalidate, warmup

    config = infravalidate.InfraValidationConfig(
        model_name=model_name,
        num_examples=num_examples,
        latency_requests=latency_requests,
        atol=atol,
        load_timeout_s=load_timeout_s,
    )
    examples = warmup.examples_from_dataset(dataset.path, "test", limit=num_examples)
    result = infravalidate.infra_validate(model.path, examples, config)
    _util.log_metrics(metrics, {**result.metrics(), "infra_blessed": int(result.infra_blessed)})
    metrics.metadata["reason"] = result.reason
    return result.infra_blessed
