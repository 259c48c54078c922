"""The champion: the model a deploy target serves now, which a run's candidates must beat.

TFX resolves the latest blessed model (``LatestBlessedModelStrategy``) and its Evaluator
compares every candidate with it on the same eval data. tfopt asks the deploy target what
it serves now, which is what production answers with:

- ``tf_serving``: the repository's ``models.config`` entry for the model, its ``stable``
  label (else the highest version it loads; without an entry, the latest version, as TF
  Serving serves without a config);
- ``vertex``: the endpoint's deployed model with the largest traffic share, its
  ``artifact_uri`` (the SavedModel it was uploaded from);
- ``champion_uri`` names one instead (``none``: no champion).

A champion that cannot be loaded (its version was deleted, ``saved_model.pb`` or the
variables are corrupt) is reported and left out: the run compares without it, the value
thresholds alone apply (a broken production model is no reason to keep a new one out).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass

from tfopt import fsutil, model_info
from tfopt.errors import TfoptError

log = logging.getLogger(__name__)

NO_CHAMPION = "none"  # champion_uri: compare without a champion


@dataclass(frozen=True)
class Champion:
    """What the resolution found.

    Attributes:
        uri: the champion's SavedModel directory; empty when there is none or it cannot
            be used (``reason`` says why).
        source: ``champion_uri``, ``tf_serving`` or ``vertex`` (empty: none looked up).
        version: the TF Serving version, or the Vertex model ``name@version``.
        reason: why there is no usable champion (empty when there is one).
    """

    uri: str = ""
    source: str = ""
    version: str = ""
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """``version 3 of the TF Serving repository``, for messages."""
        if self.source == "tf_serving":
            return f"TF Serving version {self.version} (stable)"
        if self.source == "vertex":
            return f"Vertex AI model {self.version}"
        return self.uri or "none"


def resolve_champion(
    deploy_target: str,
    serving_base_path: str = "",
    model_name: str = "tfopt-model",
    champion_uri: str = "",
    project: str = "",
    region: str = "",
    endpoint_display_name: str = "tfopt-endpoint",
    credentials=None,
) -> Champion:
    """The champion of this run (see the module docstring); never raises for a missing or
    broken champion (the ``reason`` says what was found), only for an unreachable API.

    Raises:
        CloudError: the Vertex AI API failed.
    """
    if champion_uri.strip().lower() == NO_CHAMPION:
        return Champion(reason="champion_uri='none': compared without a champion")
    if champion_uri:
        found = Champion(champion_uri.rstrip("/"), "champion_uri")
    elif deploy_target == "tf_serving":
        found = _tf_serving(serving_base_path, model_name)
    elif deploy_target == "vertex":
        found = _vertex(project, region, endpoint_display_name, credentials)
    else:
        return Champion(
            reason=f"deploy_target {deploy_target!r}: no champion to look up (tfopt reads back "
            "tf_serving and vertex; name one with champion_uri)"
        )
    return _loadable(found) if found.uri else found


def _tf_serving(base: str, name: str) -> Champion:
    from tfopt.deploy.serving import config as serving_config
    from tfopt.deploy.serving import deploy, repository

    if not base:
        return Champion(
            source="tf_serving",
            reason="serving_base_path is empty: no repository to read the champion from",
        )
    entry = serving_config.find_entry(
        serving_config.read_model_config(deploy.config_path(base)), name
    )
    if entry is not None and "stable" in entry.label_map:
        version = entry.label_map["stable"]
    elif entry is not None and entry.versions:
        version = max(entry.versions)
    else:
        versions = repository.list_versions(base, name)
        if not versions:
            return Champion(
                source="tf_serving",
                reason=f"{repository.model_dir(base, name)} holds no version yet (a first run)",
            )
        version = versions[-1]
    path = repository._join(repository.model_dir(base, name), str(version))
    return Champion(path, "tf_serving", str(version))


def _vertex(project: str, region: str, endpoint: str, credentials) -> Champion:
    from google.cloud import aiplatform_v1 as v1

    from tfopt.checks import check_reachable
    from tfopt.deploy.vertex_target import Clients, VertexTarget, call

    target = VertexTarget(project=project, region=region).resolve()
    check_reachable(target.host, "the Vertex AI API (to find the champion)")  # fails fast
    clients = Clients(target, credentials)
    found = list(
        call(
            "list endpoints",
            clients.endpoints.list_endpoints,
            request=v1.ListEndpointsRequest(
                parent=target.location_path, filter=f'display_name="{endpoint}"'
            ),
        )
    )
    if not found or not found[0].deployed_models:
        return Champion(
            source="vertex",
            reason=f"endpoint {endpoint!r} serves no model yet (a first deploy)",
        )
    ep = found[0]
    split = {k: int(v) for k, v in ep.traffic_split.items()}
    dm = max(ep.deployed_models, key=lambda d: split.get(d.id, 0))
    name = dm.model if "@" in dm.model or not dm.model_version_id else (
        f"{dm.model}@{dm.model_version_id}"
    )  # fmt: skip
    model = call("get model", clients.models.get_model, name=name)
    version = f"{model.name}@{model.version_id}" if model.version_id else model.name
    if not model.artifact_uri:
        return Champion(source="vertex", version=version, reason=f"{version} has no artifact_uri")
    return Champion(model.artifact_uri.rstrip("/"), "vertex", version)


def _loadable(found: Champion) -> Champion:
    """``found``, or no champion with the reason when its SavedModel cannot be loaded."""
    from tfopt.deploy.serving import repository

    try:
        if not fsutil.exists(os.path.join(found.uri, "saved_model.pb")):
            raise TfoptError(f"{found.uri} holds no saved_model.pb (deleted?)")
        repository.check_saved_model(found.uri)
    except TfoptError as exc:
        reason = f"{found.describe()} cannot be loaded ({exc}): compared without a champion"
        log.warning("champion: %s", reason)
        return Champion("", found.source, found.version, reason)
    return found


def champion_data(path: str) -> tuple[dict, str]:
    """``(data record, note)`` of the champion at ``path``: its ``tfopt_data.json``, or for
    a model without one (written before tfopt recorded its data, or imported) what its
    ``serving_default`` signature and labels say, with ``statistics`` None."""
    note = ""
    try:
        data = model_info.read_model_data(path)
    except ValueError as exc:
        data, note = None, f"{model_info.DATA_FILE} is unreadable ({exc})"
    if data is not None and isinstance(data.get("dataset"), dict):
        return data, note
    note = note or f"the champion has no {model_info.DATA_FILE} (written before tfopt recorded it)"
    return {"dataset": signature_schema(path), "statistics": None}, note


def signature_schema(path: str) -> dict:
    """Input shape, number of classes and class names read from a SavedModel's
    ``serving_default`` signature and ``assets/labels.txt`` (what is known; ``{}`` when the
    signature cannot be read)."""
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    try:
        with fsutil._gfile().GFile(os.path.join(path, "saved_model.pb"), "rb") as fh:
            sm.ParseFromString(fh.read())
        sig = sm.meta_graphs[0].signature_def["serving_default"]
    except Exception:  # unreadable: nothing known (the evaluation reports the error)
        return {}
    out: dict = {}
    if len(sig.inputs) == 1:
        dims = [d.size for d in next(iter(sig.inputs.values())).tensor_shape.dim]
        if len(dims) > 1 and all(d > 0 for d in dims[1:]):
            out["feature_shape"] = dims[1:]
    if len(sig.outputs) == 1:
        dims = [d.size for d in next(iter(sig.outputs.values())).tensor_shape.dim]
        if dims and dims[-1] > 0:
            out["num_classes"] = dims[-1]
    labels = os.path.join(path, "assets", "labels.txt")
    if fsutil.exists(labels):
        with fsutil._gfile().GFile(labels) as fh:
            out["class_names"] = [line.strip() for line in fh if line.strip()]
    return out
