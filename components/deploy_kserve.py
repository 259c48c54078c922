"""Deploy to KServe: push, canary on an InferenceService (TF Serving runtime), smoke-test,
promote or roll back; then register the version in the Kubeflow Model Registry."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.deploy.kserve.config import KServeConfig


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(KServeConfig)
def deploy_kserve(
    model: Input[Model],
    dataset: Input[Dataset],
    summary: Input[Artifact],
    metrics: Output[Metrics],
    inference_service: Output[Artifact],
    serving_base_path: str = "",
    storage_uri: str = "",
    model_name: str = "tfopt-model",
    namespace: str = "",
    variant: str = "cpu",
    accelerator_type: str = "NVIDIA_TESLA_T4",
    canary_percent: int = 10,
    timeout_s: float = 600.0,
    smoke_examples: int = 8,
    blessed: bool = True,
    model_registry_host: str = "",
    pipeline_run: str = "",
):
    """Refuse an unblessed model; push it, roll it out on KServe, register it.

    Args:
        summary: The select step's summary.json: the registered version's figures.
        metrics: promoted (1/0), the serving version, the smoke test's largest difference
            from the offline predictions, registered (1/0).
        inference_service: The InferenceService tfopt applied (YAML); its URL, revision and
            the rollout in the metadata.
        blessed: The select step's verdict; False refuses to deploy.
        model_registry_host: The Kubeflow Model Registry's REST address
            (http(s)://host[:port]); set, the model is registered there after a successful
            deploy ('' = not registered).
        pipeline_run: The pipeline run recorded with the registered version.
    """
    import yaml

    from tfopt import fsutil
    from tfopt.components import _util
    from tfopt.deploy import model_registry as mr
    from tfopt.deploy.kserve import config, deploy, manifest
    from tfopt.deploy.serving import warmup
    from tfopt.errors import ModelError

    if not blessed:
        raise ModelError("refusing to deploy: blessed=False")
    cfg = config.KServeConfig(  # the storage, names and resources are checked before any work
        model_name=model_name, serving_base_path=serving_base_path, storage_uri=storage_uri,
        namespace=namespace, variant=variant, accelerator_type=accelerator_type,
        canary_percent=canary_percent, timeout_s=timeout_s, smoke_examples=smoke_examples,
    )  # fmt: skip
    registry = mr.RegistryConfig(model_registry_host) if model_registry_host else None
    examples = warmup.examples_from_dataset(dataset.path, "test", limit=max(smoke_examples, 16))
    result = deploy.deploy_kserve(model.path, examples, cfg, raise_on_failure=False)
    doc = manifest.inference_service(
        cfg, result.namespace, result.version, parent_version=result.parent_version
    )
    with fsutil.atomic_file(inference_service.path) as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    inference_service.metadata.update(result.to_dict())
    figures = {"promoted": int(result.promoted), "version": result.version, "registered": 0}
    figures["smoke_max_abs_diff"] = result.checks.get("rest_max_abs_diff", -1.0)
    if not result.promoted:
        _util.log_metrics(metrics, figures)
        raise config.KServeError(f"KServe rollout rolled back: {result.reason}")
    if registry is not None:
        meta = mr.version_metadata(
            fsutil.read_json(summary.path), pipeline_run, result.parent_version,
            serving_url=result.url, inference_service=f"{result.namespace}/{result.name}",
        )  # fmt: skip
        uri = f"{cfg.cluster_repository}/{cfg.model_name}/{result.version}"
        try:
            reg = mr.register_version(
                registry, cfg.model_name, str(result.version), uri, "saved_model", meta,
                f"tfopt {pipeline_run}".strip(),
            )  # fmt: skip
        except mr.RegistryError as exc:
            inference_service.metadata["model_registry"] = {"error": str(exc)}
            _util.log_metrics(metrics, figures)
            raise
        inference_service.metadata["model_registry"] = reg.to_dict()
        figures["registered"] = 1
    _util.log_metrics(metrics, figures)
