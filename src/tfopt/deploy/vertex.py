"""Deploy a SavedModel to a Vertex AI endpoint as a canary, then promote or roll back.

The sequence (:func:`deploy_model`):

1. upload the SavedModel to the Model Registry with the pre-built TensorFlow
   serving container, as a new version of the parent model when one exists;
2. reuse the endpoint (by resource name or display name) or create it;
3. deploy the new version with ``canary_percent`` of the traffic (the other
   deployed models keep their proportions of the rest);
4. smoke-test with predictions until the canary has answered;
5. promote it to 100% (and undeploy the previous models), or roll back:
   undeploy the canary and restore the previous traffic split.

Every traffic split is validated (integers, sum 100, only deployed-model ids
the endpoint knows) before it is sent. Project, region and service account
come from parameters or the environment; credentials only ever come from
Application Default Credentials (or an object a caller passes in), never
from files or parameters of tfopt.

This module runs steps 1-3; steps 4-5 are in :mod:`~tfopt.deploy.vertex_canary`,
the target and API clients in :mod:`~tfopt.deploy.vertex_target`, the traffic
arithmetic in :mod:`~tfopt.deploy.vertex_traffic` and the settings in
:mod:`~tfopt.deploy.vertex_config`; their public names are re-exported here.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

from tfopt.checks import check_reachable
from tfopt.deploy.vertex_canary import smoke_then_promote
from tfopt.deploy.vertex_config import (
    TF_SERVING_VERSION,
    DeployConfig,
    DeployResult,
    default_serving_image,
)
from tfopt.deploy.vertex_target import (
    ENV_API_ENDPOINT,
    ENV_PROJECT,
    ENV_REGION,
    ENV_SERVICE_ACCOUNT,
    Clients,
    DeployError,
    VertexTarget,
    call,
    check_labels,
    env_value,
)
from tfopt.deploy.vertex_traffic import (
    NEW_DEPLOYED_MODEL,
    canary_split,
    smoke_requests_needed,
    validate_traffic_split,
)
from tfopt.errors import CloudError, ConfigError

__all__ = [
    "ENV_API_ENDPOINT",
    "ENV_PROJECT",
    "ENV_REGION",
    "ENV_SERVICE_ACCOUNT",
    "NEW_DEPLOYED_MODEL",
    "TF_SERVING_VERSION",
    "CloudError",
    "DeployConfig",
    "DeployError",
    "DeployResult",
    "VertexTarget",
    "canary_split",
    "check_labels",
    "default_serving_image",
    "deploy_model",
    "smoke_requests_needed",
    "validate_traffic_split",
]

log = logging.getLogger(__name__)


def _resource(path_prefix: str, kind: str, value: str) -> str:
    """``"123"`` -> ``projects/p/locations/r/<kind>/123``; full names pass through."""
    if value.startswith("projects/"):
        if f"/{kind}/" not in value:
            raise ConfigError(f"{value!r} is not a {kind[:-1]} resource name")
        return value
    if not re.match(r"^[A-Za-z0-9_-]+$", value):
        raise ConfigError(f"{kind[:-1]} {value!r}: expected an id or a resource name")
    return f"{path_prefix}/{kind}/{value}"


def _check_instances(instances: Any) -> list:
    if not isinstance(instances, list | tuple) or not instances:
        raise ConfigError("smoke-test instances: expected a non-empty list of model inputs")
    return list(instances)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """The checked inputs of one deployment, resolved before any API call."""

    target: VertexTarget
    config: DeployConfig
    artifact_uri: str
    instances: list
    parent_model: str  # resource name, or "" to look it up by display name
    endpoint_name: str  # resource name, or "" to look it up / create it by display name
    service_account: str
    image: str


def deploy_model(
    artifact_uri: str,
    instances: Sequence[Any],
    config: DeployConfig = DeployConfig(),
    target: VertexTarget = VertexTarget(),
    credentials=None,
) -> DeployResult:
    """Upload, deploy as canary, smoke-test, then promote or roll back.

    Args:
        artifact_uri: ``gs://`` directory holding the SavedModel.
        instances: A few model inputs (JSON-able lists) for the smoke test.
        config: Deployment settings.
        target: Project, region and API endpoint (empty fields from the environment).
        credentials: google-auth credentials; None = Application Default Credentials.

    Returns:
        A :class:`DeployResult`; ``promoted`` is False when the canary was rolled back.

    Raises:
        ConfigError: bad settings (before any API call).
        DeployError: an API call failed, or the endpoint holds an invalid split.
    """
    plan = _plan(artifact_uri, instances, config, target)
    check_reachable(plan.target.host, "the Vertex AI API")
    clients = Clients(plan.target, credentials)
    uploaded = _upload(clients, plan)
    endpoint = _endpoint(clients, plan)
    deployed_ids, previous = _current_split(endpoint)
    already = _deployed_as(endpoint, uploaded)
    if already is not None:
        # An earlier attempt deployed this version: test and promote (or roll back) that
        # deployment instead of deploying the version a second time.
        log.info(
            "%s is already deployed as %s on %s (a retried deploy): not deploying again",
            _version_name(uploaded),
            already,
            endpoint.name,
        )
        return smoke_then_promote(
            clients,
            config,
            endpoint.name,
            uploaded,
            already,
            [i for i in deployed_ids if i != already],
            previous,
            plan.instances,
        )
    canary_id, applied_canary = _deploy_canary(
        clients, plan, endpoint.name, uploaded, deployed_ids, previous
    )
    return smoke_then_promote(
        clients,
        config,
        endpoint.name,
        uploaded,
        canary_id,
        deployed_ids,
        applied_canary,
        plan.instances,
        restore=previous,
    )


def _plan(
    artifact_uri: str, instances: Sequence[Any], config: DeployConfig, target: VertexTarget
) -> _Plan:
    """Check every input and resolve names; raises ConfigError before any API call."""
    from google.cloud import aiplatform_v1 as v1

    target = target.resolve()
    if not isinstance(artifact_uri, str) or not artifact_uri.startswith("gs://"):
        raise ConfigError(
            f"artifact_uri={artifact_uri!r} is not allowed: Vertex AI serves "
            "models from Cloud Storage, expected a gs:// directory"
        )
    checked_instances = _check_instances(instances)
    if config.accelerator_type and config.accelerator_type not in v1.AcceleratorType.__members__:
        raise ConfigError(
            f"DeployConfig.accelerator_type={config.accelerator_type!r} is not "
            "allowed: expected one of "
            + ", ".join(
                n for n in v1.AcceleratorType.__members__ if n != "ACCELERATOR_TYPE_UNSPECIFIED"
            )
        )
    parent_model = (
        _resource(target.location_path, "models", config.parent_model)
        if config.parent_model
        else ""
    )
    endpoint_name = (
        _resource(target.location_path, "endpoints", config.endpoint) if config.endpoint else ""
    )
    service_account = config.service_account or env_value(ENV_SERVICE_ACCOUNT)
    image = config.serving_image or default_serving_image(
        target.region, bool(config.accelerator_type)
    )
    return _Plan(
        target=target,
        config=config,
        artifact_uri=artifact_uri,
        instances=checked_instances,
        parent_model=parent_model,
        endpoint_name=endpoint_name,
        service_account=service_account,
        image=image,
    )


def _version_name(uploaded) -> str:
    return f"{uploaded.model}@{uploaded.model_version_id}"


def _upload(clients: Clients, plan: _Plan):
    """1. Model Registry: a new version under the parent model when there is one.

    Returns an ``UploadModelResponse`` (or one like it for a version uploaded before).
    """
    from google.cloud import aiplatform_v1 as v1

    config, location = plan.config, plan.target.location_path
    parent_model = plan.parent_model
    if parent_model:
        call("get parent model", clients.models.get_model, name=parent_model)
    else:
        found = list(
            call(
                "list models",
                clients.models.list_models,
                request=v1.ListModelsRequest(
                    parent=location,
                    filter=f'display_name="{config.model_display_name}"',
                ),
            )
        )
        parent_model = found[0].name if found else ""
    # A retried deploy (KFP retries a failed task with the same inputs) finds the
    # version its first attempt uploaded, same artifact and image, and reuses it.
    uploaded = _uploaded_version(clients, parent_model, plan.artifact_uri, plan.image)
    if uploaded is not None:
        return uploaded
    model = v1.Model(
        display_name=config.model_display_name,
        artifact_uri=plan.artifact_uri,
        container_spec=v1.ModelContainerSpec(image_uri=plan.image),
        labels=dict(config.labels),
    )
    op = call(
        "upload model",
        clients.models.upload_model,
        request=v1.UploadModelRequest(parent=location, model=model, parent_model=parent_model),
    )
    uploaded = call("upload model", op.result, timeout=config.timeout_s)
    log.info(
        "uploaded %s@%s (parent %s)",
        uploaded.model,
        uploaded.model_version_id,
        parent_model or "none: new model",
    )
    return uploaded


def _uploaded_version(clients, parent_model: str, artifact_uri: str, image: str):
    """The version of ``parent_model`` already holding ``artifact_uri`` served by ``image``,
    as an ``UploadModelResponse``-like object, or None."""
    from google.cloud import aiplatform_v1 as v1

    if not parent_model:
        return None
    versions = call(
        "list model versions",
        clients.models.list_model_versions,
        request=v1.ListModelVersionsRequest(name=parent_model),
    )
    for version in versions:
        if version.artifact_uri == artifact_uri and version.container_spec.image_uri == image:
            log.info(
                "%s@%s already holds %s (a retried deploy): not uploading again",
                parent_model,
                version.version_id,
                artifact_uri,
            )
            return v1.UploadModelResponse(model=parent_model, model_version_id=version.version_id)
    return None


def _endpoint(clients: Clients, plan: _Plan):
    """2. The endpoint: reused by resource name or display name, else created."""
    from google.cloud import aiplatform_v1 as v1

    config, location = plan.config, plan.target.location_path
    if plan.endpoint_name:
        return call("get endpoint", clients.endpoints.get_endpoint, name=plan.endpoint_name)
    found = list(
        call(
            "list endpoints",
            clients.endpoints.list_endpoints,
            request=v1.ListEndpointsRequest(
                parent=location,
                filter=f'display_name="{config.endpoint_display_name}"',
            ),
        )
    )
    if found:
        return found[0]
    op = call(
        "create endpoint",
        clients.endpoints.create_endpoint,
        parent=location,
        endpoint=v1.Endpoint(display_name=config.endpoint_display_name, labels=dict(config.labels)),
    )
    endpoint = call("create endpoint", op.result, timeout=config.timeout_s)
    log.info("created endpoint %s", endpoint.name)
    return endpoint


def _current_split(endpoint) -> tuple[list[str], dict[str, int]]:
    """The endpoint's deployed-model ids and its validated traffic split."""
    deployed_ids = [dm.id for dm in endpoint.deployed_models]
    previous = {k: int(v) for k, v in endpoint.traffic_split.items()}
    try:
        previous = validate_traffic_split(
            previous, deployed_ids, f"current traffic split of {endpoint.name}"
        )
    except ConfigError as exc:
        raise DeployError(f"{exc}; fix the endpoint's split before deploying") from None
    return deployed_ids, previous


def _deployed_as(endpoint, uploaded) -> str | None:
    """The deployed-model id serving the ``uploaded`` version on ``endpoint``, or None."""
    version_name = _version_name(uploaded)
    return next(
        (
            dm.id
            for dm in endpoint.deployed_models
            if dm.model == version_name
            or (dm.model == uploaded.model and dm.model_version_id == uploaded.model_version_id)
        ),
        None,
    )


def _deploy_canary(
    clients: Clients,
    plan: _Plan,
    endpoint: str,
    uploaded,
    deployed_ids: list[str],
    previous: dict[str, int],
) -> tuple[str, dict[str, int]]:
    """3. Deploy the version with a validated canary split; returns its id and the split."""
    from google.cloud import aiplatform_v1 as v1

    config = plan.config
    version_name = _version_name(uploaded)
    split = validate_traffic_split(
        canary_split(previous, config.canary_percent),
        [*deployed_ids, NEW_DEPLOYED_MODEL],
        "canary traffic split",
    )
    machine = v1.MachineSpec(machine_type=config.machine_type)
    if config.accelerator_type:
        machine.accelerator_type = v1.AcceleratorType.__members__[config.accelerator_type]
        machine.accelerator_count = config.accelerator_count
    deployed = v1.DeployedModel(
        model=version_name,
        display_name=f"{config.model_display_name}-v{uploaded.model_version_id}",
        dedicated_resources=v1.DedicatedResources(
            machine_spec=machine,
            min_replica_count=config.min_replica_count,
            max_replica_count=config.max_replica_count,
        ),
        service_account=plan.service_account,
    )
    op = call(
        "deploy model",
        clients.endpoints.deploy_model,
        request=v1.DeployModelRequest(
            endpoint=endpoint, deployed_model=deployed, traffic_split=split
        ),
    )
    canary_id = call("deploy model", op.result, timeout=config.timeout_s).deployed_model.id
    applied_canary = {(canary_id if k == NEW_DEPLOYED_MODEL else k): v for k, v in split.items()}
    log.info(
        "deployed %s as %s on %s with traffic %s",
        version_name,
        canary_id,
        endpoint,
        applied_canary,
    )
    return canary_id, applied_canary
