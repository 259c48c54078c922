"""``deploy_kserve``: the canary rollout of :mod:`tfopt.deploy.kserve.rollout`, end to end."""

from __future__ import annotations

import logging

import numpy as np

from tfopt.deploy.kserve import manifest, rollout
from tfopt.deploy.kserve.config import KServeConfig, KServeError, KServeResult
from tfopt.deploy.serving import repository

log = logging.getLogger(__name__)

ROLLBACK_TIMEOUT_S = 300.0


def deploy_kserve(
    model_dir: str,
    examples: np.ndarray,
    config: KServeConfig,
    api=None,
    poll_s: float = 2.0,
    raise_on_failure: bool = True,
) -> KServeResult:
    """Push ``model_dir`` and roll it out on an InferenceService; promote or roll back.

    Args:
        model_dir: SavedModel with ``serving_default`` (``x`` -> ``probabilities``).
        examples: real feature rows: warmup records and the smoke test's instances.
        config: KServeConfig.
        api: a ``kubernetes.client.ApiClient`` (default: in-cluster, else $KUBECONFIG).
        poll_s: seconds between status reads while waiting.
        raise_on_failure: raise KServeError after a rollback (else return the result).

    Raises:
        ConfigError: the manifest does not match KServe's CRD schema (before any work).
        KServeError: the revision was not ready in time, or failed its smoke test; the
            traffic went back to the previous revision.
    """
    from tfopt.deploy.serving.infravalidate import offline_predict

    namespace = config.namespace or rollout.current_namespace()
    manifest.inference_service(config, namespace, 1)  # the schema check, before any work
    examples = np.asarray(examples, np.float32)
    smoke = examples[: config.smoke_examples]
    offline = offline_predict(model_dir, smoke)
    isvc = rollout._Isvc(rollout.api_client(api), namespace, config.name)
    live = isvc.get()  # an unreachable API fails here, before anything is pushed
    pushed = repository.push_model(model_dir, config.serving_base_path, config.model_name, examples)
    rollout.write_version_config(config, pushed.version)
    result = KServeResult(
        config.name,
        namespace,
        pushed.version,
        pushed.created,
        storage_uri=config.storage_uri_of_model(),
    )
    wanted = manifest.inference_service(config, namespace, pushed.version, pushed.content_sha256)
    percent, created_isvc = _apply(isvc, live, wanted, config, result)
    log.info(
        "InferenceService %s/%s: version %d rolling out at %d%% (previous revision: %s)",
        namespace,
        config.name,
        pushed.version,
        percent,
        result.previous_revision or "none",
    )
    try:
        obj = rollout.wait_ready(isvc, percent, config.timeout_s, poll_s)
        result.revision = rollout._ready(obj, percent)
        result.url = str((obj.get("status") or {}).get("url") or "")
        url = rollout.revision_url(obj, result.revision)
        result.checks = rollout.smoke_test(
            url, config.name, pushed.version, smoke, offline, config.atol
        )
        result.smoke_test = "passed"
        if percent != 100:
            isvc.patch({"spec": {"predictor": {"canaryTrafficPercent": None}}})
            rollout.wait_ready(isvc, 100, config.timeout_s, poll_s)
        result.promoted = True
        log.info("promoted revision %s (version %d) to 100%%", result.revision, pushed.version)
        return result
    except (KServeError, AssertionError) as exc:
        result.reason = str(exc)
    _rollback(isvc, result, created_isvc, poll_s)
    message = (
        f"KServe deploy of {config.name} version {pushed.version} failed: {result.reason}; "
        + (
            f"traffic rolled back to revision {result.previous_revision}"
            if result.previous_revision
            else "nothing served before it"
            + (": deleted the InferenceService" if created_isvc else "; left as it is")
        )
    )
    log.error("%s", message)
    if raise_on_failure:
        raise KServeError(message)
    return result


def _apply(
    isvc: rollout._Isvc, live: dict | None, wanted: dict, cfg: KServeConfig, result: KServeResult
) -> tuple[int, bool]:
    """Create or update the InferenceService; (the new revision's traffic %, created)."""
    if live is None:
        isvc.create(wanted)
        return 100, True
    result.previous_revision = rollout.predictor_status(live).get("latestRolledoutRevision") or ""
    live_notes = (live.get("metadata") or {}).get("annotations") or {}
    live_canary = ((live.get("spec") or {}).get("predictor") or {}).get("canaryTrafficPercent")
    if manifest.same_model(live, wanted):
        # This version is the live spec already: an earlier attempt applied it.
        result.parent_version = live_notes.get(manifest.PARENT_ANNOTATION, "")
        latest = rollout.predictor_status(live).get("latestCreatedRevision") or ""
        if live_canary is None or latest == result.previous_revision:
            result.previous_revision = ""  # serving all traffic already: nothing to go back to
            return 100, False
        # a canary left half-way, or rolled back: the canary share again
        isvc.patch({"spec": {"predictor": {"canaryTrafficPercent": cfg.canary_percent}}})
        return cfg.canary_percent, False
    percent = cfg.canary_percent if result.previous_revision else 100
    result.parent_version = live_notes.get(manifest.VERSION_ANNOTATION, "")
    body = manifest.inference_service(
        cfg,
        isvc.namespace,
        result.version,
        (wanted["metadata"]["annotations"]).get(manifest.CONTENT_ANNOTATION, ""),
        canary_percent=percent if percent != 100 else None,
        parent_version=result.parent_version,
    )
    meta = live.get("metadata") or {}
    body["metadata"]["resourceVersion"] = meta.get("resourceVersion")
    body["metadata"]["labels"] = {**(meta.get("labels") or {}), **body["metadata"]["labels"]}
    body["metadata"]["annotations"] = {
        **(meta.get("annotations") or {}),
        **body["metadata"]["annotations"],
    }
    isvc.replace(body)
    return percent, False


def _rollback(isvc: rollout._Isvc, result: KServeResult, created_isvc: bool, poll_s: float):
    """All traffic back on the previous revision (``canaryTrafficPercent: 0``); a failed
    first deploy is deleted. Best effort: a failure here is added to the reason."""
    try:
        if result.previous_revision:
            isvc.patch({"spec": {"predictor": {"canaryTrafficPercent": 0}}})
            rollout.wait_traffic(isvc, result.previous_revision, ROLLBACK_TIMEOUT_S, poll_s)
            result.rolled_back = True
        elif created_isvc:
            isvc.delete()
            result.rolled_back = True
    except Exception as exc:
        result.reason += f" (and the rollback failed: {type(exc).__name__}: {exc})"
