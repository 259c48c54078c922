"""Deploy component: push to the TF Serving repository, smoke-test, roll back on failure."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.deploy.serving.deploy import DeployConfig
from tfopt.deploy.serving.k8s import K8sConfig


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(DeployConfig, K8sConfig)
def deploy_tf_serving(
    model: Input[Model],
    dataset: Input[Dataset],
    manifests: Output[Artifact],
    model_base_path: str = "",
    model_name: str = "tfopt-model",
    label: str = "stable",
    variant: str = "cpu",
    namespace: str = "default",
    replicas: int = 1,
    blessed: bool = True,
    infra_blessed: bool = True,
    smoke_examples: int = 8,
) -> NamedTuple("DeployOutputs", [("version", int), ("smoke_test", str)]):
    """Refuse unblessed models; push, label, smoke-test over gRPC and REST; write k8s YAML.

    ``model_base_path`` is the TF Serving model repository (``gs://...`` on a
    cluster); empty, a repository inside this step's outputs is used.

    Args:
        model: The model to deploy (a SavedModel; the selected model).
        manifests: Kubernetes manifests (Deployment, Service, ConfigMap) that serve the
            repository; the version, ports and smoke test in its metadata.
        model_base_path: The TF Serving model repository (gs://... or a mounted path);
            the model goes to <model_base_path>/<model_name>/<version>. '' = a
            repository inside this step's outputs (local runs).
        namespace: Kubernetes namespace of the manifests.
        replicas: Serving pods in the manifests' Deployment.
        blessed: The select step's verdict; False refuses to deploy.
        infra_blessed: The infra-validate step's verdict; False refuses to deploy.
    """
    import os
    from collections import namedtuple

    from tfopt.deploy.serving import deploy, k8s, warmup
    from tfopt.errors import ModelError

    if not (blessed and infra_blessed):
        raise ModelError(f"refusing to deploy: blessed={blessed}, infra_blessed={infra_blessed}")
    model_base_path = model_base_path or os.path.join(
        os.path.dirname(manifests.path), "model_repository"
    )
    examples = warmup.examples_from_dataset(dataset.path, "test", limit=max(smoke_examples, 16))
    result = deploy.deploy(
        model.path,
        model_base_path,
        examples,
        deploy.DeployConfig(model_name=model_name, label=label, smoke_examples=smoke_examples),
    )
    deploy.write_k8s_manifests(
        manifests.path,
        model_base_path,
        model_name,
        variant=variant,
        namespace=namespace,
        replicas=replicas,
    )
    manifests.metadata.update(
        {
            **result.summary(),
            "variant": variant,
            "image": k8s.IMAGES[variant],
            "rollback_version": result.rollback_version or 0,  # 0 = none
        }
    )
    return namedtuple("DeployOutputs", ["version", "smoke_test"])(result.version, result.smoke_test)
