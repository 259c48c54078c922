"""Roll a SavedModel out on KServe: push, apply, wait, smoke-test, promote or roll back.

1. Push the SavedModel to the TF Serving repository (idempotent: identical content keeps
   its version) and write the revision's version-pinning config beside it.
2. Apply the InferenceService through the Kubernetes API (``CustomObjectsApi``): create it,
   or replace its spec with the new version and ``canaryTrafficPercent``. A first deploy
   takes all traffic; a re-run of the same version makes no new revision.
3. Wait until the new revision is ready and holds its share of the traffic
   (``status.components.predictor``: ``latestReadyRevision == latestCreatedRevision``,
   the ``Ready`` condition); a revision not ready within ``timeout_s`` fails with the
   status conditions.
4. Smoke-test the new revision through its ``latest`` tag URL over the V1 REST protocol
   (TF Serving's: model status names the version, ``:predict`` matches the offline
   predictions).
5. Promote (drop ``canaryTrafficPercent``: the new revision takes 100%) or roll back
   (``canaryTrafficPercent: 0``, KServe's rollback: all traffic on the previous rolled-out
   revision; a failed first deploy is deleted). A rollback raises :class:`KServeError`.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request

import numpy as np

from tfopt import fsutil
from tfopt.deploy.kserve import manifest
from tfopt.deploy.kserve.config import KServeConfig, KServeError
from tfopt.deploy.serving import repository

log = logging.getLogger(__name__)

SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
FAILED_TRANSITIONS = ("InvalidSpec", "BlockedByFailedLoad")  # modelStatus: no point waiting


def current_namespace() -> str:
    """This pod's namespace (its service account's), else ``default``."""
    try:
        with open(SA_NAMESPACE) as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"


def api_client(api=None):
    """``api`` or one from the in-cluster service account (else ``$KUBECONFIG``)."""
    if api is not None:
        return api
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    return client.ApiClient()


class _Isvc:
    """The InferenceService's REST calls (``CustomObjectsApi``)."""

    def __init__(self, api, namespace: str, name: str):
        from kubernetes import client

        self.custom, self.namespace, self.name = client.CustomObjectsApi(api), namespace, name
        self._where = (manifest.API_GROUP, manifest.API_VERSION, namespace, manifest.PLURAL)

    def get(self) -> dict | None:
        from kubernetes.client import ApiException

        try:
            return self.custom.get_namespaced_custom_object(*self._where, self.name)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, body: dict) -> dict:
        return self.custom.create_namespaced_custom_object(*self._where, body)

    def replace(self, body: dict) -> dict:
        return self.custom.replace_namespaced_custom_object(*self._where, self.name, body)

    def patch(self, body: dict) -> dict:  # JSON merge patch: None removes a field
        return self.custom.patch_namespaced_custom_object(*self._where, self.name, body)

    def delete(self) -> None:
        self.custom.delete_namespaced_custom_object(*self._where, self.name)


def predictor_status(obj: dict | None) -> dict:
    return (((obj or {}).get("status") or {}).get("components") or {}).get("predictor") or {}


def describe_status(obj: dict | None) -> str:
    """The conditions and model status, for an error message."""
    status = (obj or {}).get("status") or {}
    conds = [
        f"{c.get('type')}={c.get('status')}"
        + (f" ({c.get('reason') or ''}: {c.get('message') or ''})" if c.get("reason") else "")
        for c in status.get("conditions") or []
    ]
    text = "; ".join(conds) or "no conditions yet"
    model = status.get("modelStatus") or {}
    failure = model.get("lastFailureInfo") or {}
    if model.get("transitionStatus"):
        text += f"; modelStatus {model['transitionStatus']}"
    if failure:
        text += f" ({failure.get('reason', '')}: {failure.get('message', '')})"
    return text


def _traffic_of(obj: dict, revision: str) -> int:
    return sum(
        int(t.get("percent") or 0)
        for t in predictor_status(obj).get("traffic") or []
        if t.get("revisionName") == revision
    )


def _ready(obj: dict, want_percent: int) -> str:
    """The new revision's name once it is ready with ``want_percent`` of the traffic."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return ""
    pred = predictor_status(obj)
    latest = pred.get("latestCreatedRevision") or ""
    if not latest or pred.get("latestReadyRevision") != latest:
        return ""
    conds = {c.get("type"): str(c.get("status")) for c in status.get("conditions") or []}
    if conds.get("Ready") != "True" or _traffic_of(obj, latest) != want_percent:
        return ""
    return latest


def wait_ready(isvc: _Isvc, want_percent: int, timeout_s: float, poll_s: float) -> dict:
    """The InferenceService once its latest revision serves ``want_percent``; KServeError
    with the status conditions after ``timeout_s`` or on a spec KServe cannot load."""
    deadline = time.monotonic() + timeout_s
    obj = None
    while True:
        obj = isvc.get()
        if obj is None:
            raise KServeError(f"InferenceService {isvc.namespace}/{isvc.name} was deleted")
        if _ready(obj, want_percent):
            return obj
        transition = ((obj.get("status") or {}).get("modelStatus") or {}).get("transitionStatus")
        if transition in FAILED_TRANSITIONS:
            raise KServeError(
                f"InferenceService {isvc.namespace}/{isvc.name}: the new revision cannot "
                f"load: {describe_status(obj)}"
            )
        if time.monotonic() >= deadline:
            latest = predictor_status(obj).get("latestCreatedRevision") or "?"
            raise KServeError(
                f"revision {latest} of InferenceService {isvc.namespace}/{isvc.name} was not "
                f"ready with {want_percent}% of the traffic within {timeout_s:g} s: "
                f"{describe_status(obj)}"
            )
        time.sleep(poll_s)


def wait_traffic(isvc: _Isvc, revision: str, timeout_s: float, poll_s: float) -> dict:
    """The InferenceService once ``revision`` holds all its traffic (after a rollback)."""
    deadline = time.monotonic() + timeout_s
    while True:
        obj = isvc.get()
        if obj is not None and _traffic_of(obj, revision) == 100:
            return obj
        if time.monotonic() >= deadline:
            raise KServeError(
                f"revision {revision} did not get all traffic back within {timeout_s:g} s: "
                f"{describe_status(obj)}"
            )
        time.sleep(poll_s)


def _http_json(method: str, url: str, body: dict | None = None, timeout: float = 30.0):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{method} {url}: HTTP {exc.code} {exc.read()[:300]!r}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise AssertionError(f"{method} {url}: {exc}") from None


def revision_url(obj: dict, revision: str) -> str:
    """The URL that reaches ``revision`` alone (its traffic tag), else the predictor's."""
    pred = predictor_status(obj)
    for t in pred.get("traffic") or []:
        if t.get("revisionName") == revision and t.get("url"):
            return str(t["url"])
    return str(pred.get("url") or ((obj.get("status") or {}).get("url")) or "")


def smoke_test(
    url: str, name: str, version: int, examples: np.ndarray, offline: np.ndarray, atol: float
) -> dict:
    """V1 REST (TF Serving's): the model status names ``version`` AVAILABLE and
    ``:predict`` answers the offline predictions; AssertionError otherwise."""
    from tfopt.deploy.serving.infravalidate import compare

    if not url:
        raise AssertionError("the InferenceService reports no URL")
    base = url.rstrip("/") + f"/v1/models/{name}"
    status = _http_json("GET", base)
    states = {s.get("version"): s.get("state") for s in status.get("model_version_status", [])}
    if states.get(str(version)) != "AVAILABLE":
        raise AssertionError(f"GET {base}: version {version} is not AVAILABLE: {states}")
    out = _http_json("POST", base + ":predict", {"instances": examples.tolist()})
    served = np.asarray(out.get("predictions"), np.float32)
    diff = compare(served, offline, atol, f"POST {base}:predict")
    if not np.allclose(served.sum(axis=-1), 1.0, atol=1e-3):
        raise AssertionError(f"POST {base}:predict: probabilities do not sum to 1")
    return {"rest_max_abs_diff": diff, "url": url}


def write_version_config(cfg: KServeConfig, version: int) -> str:
    """``<repository>/<model>/tfopt-kserve-<version>.config`` (atomic; the same text each
    time, so a re-run rewrites nothing a running revision reads differently)."""
    path = f"{repository.model_dir(cfg.serving_base_path, cfg.model_name)}/" + (
        manifest.version_config_name(version)
    )
    text = manifest.version_config(cfg, version)
    if fsutil.exists(path):
        opener = fsutil._gfile().GFile if fsutil.is_remote(path) else open
        with opener(path) as fh:
            if fh.read() == text:
                return path
    with fsutil.atomic_file(path) as fh:
        fh.write(text)
    return path
