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
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from tfopt.checks import check_choice, check_int, check_reachable, check_str
from tfopt.errors import CloudError, ConfigError

log = logging.getLogger(__name__)

# Environment variables read when a parameter is empty (first one set wins).
ENV_PROJECT = ("GOOGLE_CLOUD_PROJECT", "CLOUD_ML_PROJECT_ID")
ENV_REGION = ("GOOGLE_CLOUD_REGION", "CLOUD_ML_REGION")
ENV_SERVICE_ACCOUNT = ("TFOPT_SERVICE_ACCOUNT",)
ENV_API_ENDPOINT = ("TFOPT_VERTEX_API_ENDPOINT",)

# Newest pre-built TensorFlow prediction container google-cloud-aiplatform knows.
TF_SERVING_VERSION = "2.15"
NEW_DEPLOYED_MODEL = "0"  # the id Vertex uses for "the model deployed by this request"
_REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]+$")
_LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")


class DeployError(CloudError):
    """A Vertex AI call failed or the deployment could not be completed."""


def _env(names: Sequence[str]) -> str:
    for name in names:
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    return ""


def check_labels(owner: str, labels: Mapping[str, str]) -> None:
    """GCP label rules: lowercase keys/values, <= 63 characters, <= 64 labels."""
    if not isinstance(labels, Mapping) or len(labels) > 64:
        raise ConfigError(
            f"{owner}.labels={labels!r} is not allowed: expected a mapping of at most 64 labels"
        )
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_RE.match(key):
            raise ConfigError(
                f"{owner}.labels key {key!r} is not allowed: expected lowercase "
                "letters, digits, '_' or '-', starting with a letter, <= 63 chars"
            )
        if not isinstance(value, str) or not _LABEL_VALUE_RE.match(value):
            raise ConfigError(
                f"{owner}.labels[{key!r}]={value!r} is not allowed: expected "
                "lowercase letters, digits, '_' or '-', <= 63 chars"
            )


@dataclasses.dataclass(frozen=True)
class VertexTarget:
    """Where Vertex AI calls go. Empty fields are filled from the environment.

    Attributes:
        project: GCP project id (env ``GOOGLE_CLOUD_PROJECT`` / ``CLOUD_ML_PROJECT_ID``).
        region: Vertex region, e.g. ``us-central1`` (env ``GOOGLE_CLOUD_REGION`` /
            ``CLOUD_ML_REGION``).
        api_endpoint: ``host:port`` override of ``{region}-aiplatform.googleapis.com``
            (Private Service Connect, or a local stand-in; env ``TFOPT_VERTEX_API_ENDPOINT``).
    """

    project: str = ""
    region: str = ""
    api_endpoint: str = ""

    def __post_init__(self):
        for name in ("project", "region", "api_endpoint"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(
                    f"VertexTarget.{name}={getattr(self, name)!r} is not allowed: expected a string"
                )

    def resolve(self) -> VertexTarget:
        """Fill empty fields from the environment; fail naming what is missing."""
        project = self.project or _env(ENV_PROJECT)
        region = self.region or _env(ENV_REGION)
        endpoint = self.api_endpoint or _env(ENV_API_ENDPOINT)
        if not project:
            raise ConfigError(
                "Vertex AI project is missing: set the 'project' parameter or "
                f"one of the environment variables {', '.join(ENV_PROJECT)}"
            )
        if not region:
            raise ConfigError(
                "Vertex AI region is missing: set the 'region' parameter or "
                f"one of the environment variables {', '.join(ENV_REGION)}"
            )
        if not _PROJECT_RE.match(project):
            raise ConfigError(
                f"VertexTarget.project={project!r} is not allowed: expected a "
                "GCP project id (6-30 lowercase letters, digits, '-') or number"
            )
        if not _REGION_RE.match(region) or region == "global":
            raise ConfigError(
                f"VertexTarget.region={region!r} is not allowed: expected a "
                "Vertex AI region like 'us-central1'"
            )
        return VertexTarget(project, region, endpoint)

    @property
    def host(self) -> str:
        """``host:port`` the API calls go to."""
        return self.api_endpoint or f"{self.region}-aiplatform.googleapis.com"

    @property
    def location_path(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def client_options(self) -> dict:
        return {"api_endpoint": self.host}


# ---------------------------------------------------------------- traffic splits


def validate_traffic_split(
    split: Mapping[str, int], deployed_ids: Collection[str], where: str = "traffic split"
) -> dict[str, int]:
    """Return ``split`` as a dict after checking it can be sent to Vertex AI.

    Percentages are integers in [0, 100] that sum to 100, and every key is a
    deployed-model id in ``deployed_ids``. An empty split is allowed only when
    nothing is deployed.
    """
    if not isinstance(split, Mapping):
        raise ConfigError(f"{where}={split!r}: expected a mapping of deployed-model id to percent")
    known = {str(i) for i in deployed_ids}
    out: dict[str, int] = {}
    for key, pct in split.items():
        if str(key) not in known:
            raise ConfigError(
                f"{where}: deployed-model id {key!r} is not deployed on the "
                f"endpoint; known ids: {', '.join(sorted(known)) or '(none)'}"
            )
        if isinstance(pct, bool) or not isinstance(pct, int) or not 0 <= pct <= 100:
            raise ConfigError(f"{where}[{key!r}]={pct!r}: expected an integer percent in [0, 100]")
        out[str(key)] = pct
    total = sum(out.values())
    if not out and not known:
        return out
    if total != 100:
        raise ConfigError(f"{where}={out!r} sums to {total}: expected 100")
    return out


def canary_split(
    current: Mapping[str, int], canary_percent: int, new_id: str = NEW_DEPLOYED_MODEL
) -> dict[str, int]:
    """Traffic split giving ``new_id`` ``canary_percent``; others keep their proportions.

    With nothing serving yet, the new model gets 100% (there is nothing to
    compare against). Shares are rounded by largest remainder so they sum to 100.
    """
    check_int("canary_split", "canary_percent", canary_percent, 1, 100)
    live = {k: v for k, v in current.items() if v > 0}
    if not live or canary_percent == 100:
        return {new_id: 100}
    out = _scaled(live, 100 - canary_percent)
    out[new_id] = canary_percent
    return out


def _scaled(shares: Mapping[str, int], to: int) -> dict[str, int]:
    """Positive ``shares`` scaled to sum to ``to``, by largest remainder; zeros dropped."""
    total = sum(shares.values())
    exact = {k: v * to / total for k, v in shares.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    short = to - sum(out.values())
    for k in sorted(exact, key=lambda k: (out[k] - exact[k], k))[:short]:
        out[k] += 1
    return {k: v for k, v in out.items() if v > 0}


def smoke_requests_needed(
    canary_percent: int, miss_probability: float = 1e-3, cap: int = 1000
) -> int:
    """Predictions to send so a healthy canary answers at least once (1 - miss_probability)."""
    if canary_percent >= 100:
        return 1
    p = canary_percent / 100
    return min(cap, max(1, math.ceil(math.log(miss_probability) / math.log(1 - p))))


# ---------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class DeployConfig:
    """How a model is uploaded, deployed, smoke-tested and promoted.

    Attributes:
        model_display_name: Model Registry name; a model with this name becomes the
            parent and the upload a new version of it.
        parent_model: Parent model resource name or id ("" = look up by display name).
        endpoint: Endpoint resource name or id to reuse ("" = look up
            ``endpoint_display_name``, create it when absent).
        endpoint_display_name: Display name used to find or create the endpoint.
        serving_image: Serving container URI ("" = pre-built TensorFlow container of
            the region, CPU or GPU to match ``accelerator_type``).
        machine_type, accelerator_type, accelerator_count, min_replica_count,
            max_replica_count: Dedicated resources of the deployed model.
        canary_percent: Traffic the new version gets while it is tested (1-100).
        smoke_requests: Predictions to send at most (0 = enough to reach a healthy
            canary with probability 0.999).
        undeploy_previous: After promotion, undeploy the models that now get 0%.
        service_account: Service account the deployed model runs as
            ("" = env ``TFOPT_SERVICE_ACCOUNT``, else Vertex's default).
        labels: Labels set on the model and the endpoint.
        timeout_s: Seconds to wait for each long-running operation.
    """

    model_display_name: str = "tfopt-model"
    parent_model: str = ""
    endpoint: str = ""
    endpoint_display_name: str = "tfopt-endpoint"
    serving_image: str = ""
    machine_type: str = "n1-standard-2"
    accelerator_type: str = ""
    accelerator_count: int = 0
    min_replica_count: int = 1
    max_replica_count: int = 1
    canary_percent: int = 10
    smoke_requests: int = 0
    undeploy_previous: bool = True
    service_account: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    timeout_s: float = 1800.0

    def __post_init__(self):
        owner = "DeployConfig"
        check_str(owner, "model_display_name", self.model_display_name)
        check_str(owner, "endpoint_display_name", self.endpoint_display_name)
        check_str(owner, "machine_type", self.machine_type)
        for name in (
            "parent_model",
            "endpoint",
            "serving_image",
            "accelerator_type",
            "service_account",
        ):
            check_str(owner, name, getattr(self, name), allow_empty=True)
        if self.accelerator_type and not re.match(r"^[A-Z0-9_]+$", self.accelerator_type):
            raise ConfigError(
                f"{owner}.accelerator_type={self.accelerator_type!r} is not "
                "allowed: expected a Vertex AcceleratorType like 'NVIDIA_TESLA_T4'"
            )
        check_int(owner, "accelerator_count", self.accelerator_count, 0, 16)
        if bool(self.accelerator_type) != (self.accelerator_count > 0):
            raise ConfigError(
                f"{owner}.accelerator_count={self.accelerator_count!r} is not "
                f"allowed with accelerator_type={self.accelerator_type!r}: expected "
                ">= 1 with an accelerator type and 0 without"
            )
        check_int(owner, "min_replica_count", self.min_replica_count, 1, 1000)
        check_int(owner, "max_replica_count", self.max_replica_count, self.min_replica_count, 1000)
        check_int(owner, "canary_percent", self.canary_percent, 1, 100)
        check_int(owner, "smoke_requests", self.smoke_requests, 0, 10000)
        check_choice(owner, "undeploy_previous", self.undeploy_previous, (True, False))
        check_labels(owner, self.labels)
        if self.service_account and "@" not in self.service_account:
            raise ConfigError(
                f"{owner}.service_account={self.service_account!r} is not "
                "allowed: expected a service account e-mail"
            )
        if (
            isinstance(self.timeout_s, bool)
            or not isinstance(self.timeout_s, int | float)
            or self.timeout_s <= 0
        ):
            raise ConfigError(
                f"{owner}.timeout_s={self.timeout_s!r} is not allowed: expected a positive number"
            )


@dataclasses.dataclass
class DeployResult:
    """What :func:`deploy_model` did."""

    model: str
    model_version_id: str
    endpoint: str
    deployed_model_id: str
    promoted: bool
    previous_split: dict[str, int]
    canary_split: dict[str, int]
    final_split: dict[str, int]
    undeployed: list[str]
    smoke_requests: int
    canary_answers: int
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_serving_image(region: str, gpu: bool) -> str:
    """Pre-built TensorFlow serving container for the region's geography."""
    from google.cloud.aiplatform import helpers

    return helpers.get_prebuilt_prediction_container_uri(
        framework="tensorflow",
        framework_version=TF_SERVING_VERSION,
        region=region,
        accelerator="gpu" if gpu else "cpu",
    )


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


def _prediction_problem(predictions: Sequence[Any], n: int) -> str:
    """'' if ``predictions`` look like ``n`` rows of finite numbers, else what is wrong."""
    if len(predictions) != n:
        return f"{len(predictions)} predictions for {n} instances"

    def flat(v):
        if isinstance(v, list | tuple):
            for item in v:
                yield from flat(item)
        else:
            yield v

    for i, row in enumerate(predictions):
        values = list(flat(row if isinstance(row, list | tuple) else [row]))
        if not values:
            return f"prediction {i} is empty"
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                return f"prediction {i} holds a non-finite or non-numeric value {v!r}"
    return ""


class _Clients:
    """The three Vertex AI v1 GAPIC clients for one target."""

    def __init__(self, target: VertexTarget, credentials=None):
        from google.cloud import aiplatform_v1

        kwargs = {"credentials": credentials, "client_options": target.client_options()}
        self.models = aiplatform_v1.ModelServiceClient(**kwargs)
        self.endpoints = aiplatform_v1.EndpointServiceClient(**kwargs)
        self.predictions = aiplatform_v1.PredictionServiceClient(**kwargs)


def _call(what: str, fn, *args, **kwargs):
    """Run one API call; turn google.api_core errors into DeployError naming the step."""
    from google.api_core import exceptions

    try:
        return fn(*args, **kwargs)
    except exceptions.GoogleAPICallError as exc:
        raise DeployError(f"Vertex AI {what} failed: {exc}") from exc


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
    from google.cloud import aiplatform_v1 as v1

    target = target.resolve()
    if not isinstance(artifact_uri, str) or not artifact_uri.startswith("gs://"):
        raise ConfigError(
            f"artifact_uri={artifact_uri!r} is not allowed: Vertex AI serves "
            "models from Cloud Storage, expected a gs:// directory"
        )
    instances = _check_instances(instances)
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
    service_account = config.service_account or _env(ENV_SERVICE_ACCOUNT)
    image = config.serving_image or default_serving_image(
        target.region, bool(config.accelerator_type)
    )
    check_reachable(target.host, "the Vertex AI API")
    clients = _Clients(target, credentials)
    timeout = config.timeout_s
    labels = dict(config.labels)

    # 1. Model Registry: a new version under the parent model when there is one.
    if parent_model:
        _call("get parent model", clients.models.get_model, name=parent_model)
    else:
        found = list(
            _call(
                "list models",
                clients.models.list_models,
                request=v1.ListModelsRequest(
                    parent=target.location_path,
                    filter=f'display_name="{config.model_display_name}"',
                ),
            )
        )
        parent_model = found[0].name if found else ""
    # A retried deploy (KFP retries a failed task with the same inputs) finds the
    # version its first attempt uploaded, same artifact and image, and reuses it.
    uploaded = _uploaded_version(clients, parent_model, artifact_uri, image)
    if uploaded is None:
        model = v1.Model(
            display_name=config.model_display_name,
            artifact_uri=artifact_uri,
            container_spec=v1.ModelContainerSpec(image_uri=image),
            labels=labels,
        )
        op = _call(
            "upload model",
            clients.models.upload_model,
            request=v1.UploadModelRequest(
                parent=target.location_path, model=model, parent_model=parent_model
            ),
        )
        uploaded = _call("upload model", op.result, timeout=timeout)
        log.info(
            "uploaded %s@%s (parent %s)",
            uploaded.model,
            uploaded.model_version_id,
            parent_model or "none: new model",
        )
    version_name = f"{uploaded.model}@{uploaded.model_version_id}"

    # 2. Endpoint: reuse or create.
    if endpoint_name:
        endpoint = _call("get endpoint", clients.endpoints.get_endpoint, name=endpoint_name)
    else:
        found = list(
            _call(
                "list endpoints",
                clients.endpoints.list_endpoints,
                request=v1.ListEndpointsRequest(
                    parent=target.location_path,
                    filter=f'display_name="{config.endpoint_display_name}"',
                ),
            )
        )
        if found:
            endpoint = found[0]
        else:
            op = _call(
                "create endpoint",
                clients.endpoints.create_endpoint,
                parent=target.location_path,
                endpoint=v1.Endpoint(display_name=config.endpoint_display_name, labels=labels),
            )
            endpoint = _call("create endpoint", op.result, timeout=timeout)
            log.info("created endpoint %s", endpoint.name)

    # 3. Canary deployment with a validated split.
    deployed_ids = [dm.id for dm in endpoint.deployed_models]
    previous = {k: int(v) for k, v in endpoint.traffic_split.items()}
    try:
        previous = validate_traffic_split(
            previous, deployed_ids, f"current traffic split of {endpoint.name}"
        )
    except ConfigError as exc:
        raise DeployError(f"{exc}; fix the endpoint's split before deploying") from None
    already = next(
        (
            dm.id
            for dm in endpoint.deployed_models
            if dm.model == version_name
            or (dm.model == uploaded.model and dm.model_version_id == uploaded.model_version_id)
        ),
        None,
    )
    if already is not None:
        # An earlier attempt deployed this version: test and promote (or roll back) that
        # deployment instead of deploying the version a second time.
        log.info(
            "%s is already deployed as %s on %s (a retried deploy): not deploying again",
            version_name,
            already,
            endpoint.name,
        )
        return _smoke_then_promote(
            clients,
            config,
            endpoint.name,
            uploaded,
            already,
            [i for i in deployed_ids if i != already],
            previous,
            instances,
        )
    split = validate_traffic_split(
        canary_split(previous, config.canary_percent),
        [*deployed_ids, NEW_DEPLOYED_MODEL],
        "canary traffic split",
    )
    machine = v1.MachineSpec(machine_type=config.machine_type)
    if config.accelerator_type:
        machine.accelerator_type = v1.AcceleratorType[config.accelerator_type]
        machine.accelerator_count = config.accelerator_count
    deployed = v1.DeployedModel(
        model=version_name,
        display_name=f"{config.model_display_name}-v{uploaded.model_version_id}",
        dedicated_resources=v1.DedicatedResources(
            machine_spec=machine,
            min_replica_count=config.min_replica_count,
            max_replica_count=config.max_replica_count,
        ),
        service_account=service_account,
    )
    op = _call(
        "deploy model",
        clients.endpoints.deploy_model,
        request=v1.DeployModelRequest(
            endpoint=endpoint.name, deployed_model=deployed, traffic_split=split
        ),
    )
    canary_id = _call("deploy model", op.result, timeout=timeout).deployed_model.id
    applied_canary = {(canary_id if k == NEW_DEPLOYED_MODEL else k): v for k, v in split.items()}
    log.info(
        "deployed %s as %s on %s with traffic %s",
        version_name,
        canary_id,
        endpoint.name,
        applied_canary,
    )

    return _smoke_then_promote(
        clients,
        config,
        endpoint.name,
        uploaded,
        canary_id,
        deployed_ids,
        applied_canary,
        instances,
        restore=previous,
    )


def _smoke_then_promote(
    clients,
    config: DeployConfig,
    endpoint: str,
    uploaded,
    canary_id: str,
    others: list[str],
    current: dict[str, int],
    instances: list,
    restore: dict[str, int] | None = None,
) -> DeployResult:
    """4. Smoke-test the canary ``canary_id`` (``current``: the endpoint's split, ``others``:
    the other deployed models), then 5. promote it, or roll back to ``restore``
    (default: the others' current shares, scaled to 100)."""
    from google.cloud import aiplatform_v1 as v1

    if restore is None:
        live = {k: v for k, v in current.items() if k != canary_id and v > 0}
        restore = _scaled(live, 100) if live else {}
    budget = config.smoke_requests or smoke_requests_needed(max(current.get(canary_id, 0), 1))
    request = v1.PredictRequest(endpoint=endpoint)
    request.instances.extend(instances)
    sent = answers = 0
    reason = ""
    while sent < budget and not answers:
        sent += 1
        try:
            response = clients.predictions.predict(request=request, timeout=60)
        except Exception as exc:  # any failure of the live endpoint fails the canary
            reason = f"prediction {sent} failed: {exc}"
            break
        problem = _prediction_problem(
            v1.PredictResponse.to_dict(response)["predictions"], len(instances)
        )
        if problem:
            reason = (
                f"prediction {sent} (served by deployed model "
                f"{response.deployed_model_id or '?'}): {problem}"
            )
            break
        answers += response.deployed_model_id == canary_id
    if not reason and not answers:
        reason = f"the canary {canary_id} answered none of {sent} predictions"

    result = DeployResult(
        model=uploaded.model,
        model_version_id=uploaded.model_version_id,
        endpoint=endpoint,
        deployed_model_id=canary_id,
        promoted=not reason,
        previous_split=restore,
        canary_split=current,
        final_split={},
        undeployed=[],
        smoke_requests=sent,
        canary_answers=answers,
        reason=reason,
    )
    timeout = config.timeout_s
    if reason:
        if not restore:  # the canary is all there is: undeploying it would serve nothing
            log.warning(
                "smoke test failed (%s); %s is the only model on %s, left deployed",
                reason,
                canary_id,
                endpoint,
            )
            result.final_split = current
            return result
        # 5a. Roll back: undeploy the canary, restore the previous split.
        log.warning("smoke test failed (%s); rolling back %s", reason, canary_id)
        restore = validate_traffic_split(restore, others, "restored traffic split")
        op = _call(
            "undeploy canary",
            clients.endpoints.undeploy_model,
            request=v1.UndeployModelRequest(
                endpoint=endpoint, deployed_model_id=canary_id, traffic_split=restore
            ),
        )
        _call("undeploy canary", op.result, timeout=timeout)
        result.final_split = restore
        result.undeployed = [canary_id]
        return result

    # 5b. Promote: all traffic to the canary, then retire the previous models.
    final = validate_traffic_split({canary_id: 100}, [*others, canary_id], "promoted traffic split")
    _call(
        "promote canary",
        clients.endpoints.update_endpoint,
        endpoint=v1.Endpoint(name=endpoint, traffic_split=final),
        update_mask={"paths": ["traffic_split"]},
        timeout=60,
    )
    result.final_split = final
    if config.undeploy_previous:
        for old in others:
            op = _call(
                "undeploy previous model",
                clients.endpoints.undeploy_model,
                request=v1.UndeployModelRequest(
                    endpoint=endpoint, deployed_model_id=old, traffic_split={canary_id: 100}
                ),
            )
            _call("undeploy previous model", op.result, timeout=timeout)
            result.undeployed.append(old)
    log.info(
        "promoted %s to 100%% on %s (undeployed %s)",
        canary_id,
        endpoint,
        result.undeployed or "none",
    )
    return result


def _uploaded_version(clients, parent_model: str, artifact_uri: str, image: str):
    """The version of ``parent_model`` already holding ``artifact_uri`` served by ``image``,
    as an ``UploadModelResponse``-like object, or None."""
    from google.cloud import aiplatform_v1 as v1

    if not parent_model:
        return None
    versions = _call(
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
