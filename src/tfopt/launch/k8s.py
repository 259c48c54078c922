"""Create a custom resource, watch it to the end, surface failures, delete on cancel.

Shared by the TrainJob and JobSet launchers. It speaks plain Kubernetes REST
through the ``kubernetes`` client (``CustomObjectsApi`` for the job, a watch
on its name for status changes, ``CoreV1Api`` for the pods and their logs),
so it needs no operator SDK. Semantics match :func:`tfopt.launch.tfjob.launch_tfjob`:
wait for a terminal condition, raise :class:`LaunchError` with the failed pod's
last log lines, delete the job on timeout, SIGTERM (a cancelled KFP task) or Ctrl-C.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import urllib3
from kubernetes import client as k8s
from kubernetes import watch

from tfopt.launch.job import Cancelled, JobOutcome, LaunchError, sigterm_raises

log = logging.getLogger(__name__)

JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
LOG_TAIL_LINES = 20
MAX_API_ERRORS = 5  # consecutive failed watch/get calls before giving up on the job


@dataclass(frozen=True)
class Resource:
    """Where a custom resource lives in the API (``/apis/<group>/<version>/.../<plural>``)."""

    group: str
    version: str
    plural: str
    kind: str
    done: tuple[str, ...]  # condition types that mean success
    failed: tuple[str, ...] = ("Failed",)


def true_conditions(obj: dict | None) -> list[dict]:
    """The object's conditions whose status is ``True``, oldest first."""
    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    return [c for c in conds if str(c.get("status")) == "True"]


def terminal(res: Resource, obj: dict) -> tuple[str, str, str]:
    """``(state, reason, message)``: state is ``succeeded``, ``failed`` or ``""`` (running)."""
    for cond in reversed(true_conditions(obj)):
        if cond.get("type") in res.failed:
            return "failed", cond.get("reason", ""), cond.get("message", "")
        if cond.get("type") in res.done:
            return "succeeded", cond.get("reason", ""), cond.get("message", "")
    return "", "", ""


def api_client(api=None) -> k8s.ApiClient:
    """``api`` or one from the in-cluster service account (falling back to ~/.kube/config)."""
    if api is not None:
        return api
    from kubernetes import config

    try:
        config.load_incluster_config()
    except config.ConfigException:  # outside a cluster: $KUBECONFIG, read now (not at import)
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None)
    return k8s.ApiClient()


def failed_pod_logs(core: k8s.CoreV1Api, namespace: str, name: str) -> str:
    """The first failed pod of JobSet ``name`` and its last log lines ('' if none)."""
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{JOBSET_NAME_LABEL}={name}")
    except Exception as exc:  # best effort: the job's failure is reported either way
        log.debug("cannot list pods of %s: %s", name, exc)
        return ""
    failed = sorted(
        (p for p in pods.items if p.status and p.status.phase == "Failed"),
        key=lambda p: p.metadata.name,
    )
    if not failed:
        return ""
    pod = failed[0].metadata.name
    try:
        text = core.read_namespaced_pod_log(pod, namespace, tail_lines=LOG_TAIL_LINES)
    except Exception as exc:
        text = f"(logs unavailable: {exc})"
    return f"\n--- last lines of {pod} ---\n{text.rstrip()}"


def print_new_logs(core: k8s.CoreV1Api, namespace: str, name: str, seen: dict[str, int]) -> None:
    """Print the log lines of JobSet ``name``'s pods not printed yet (best effort)."""
    try:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{JOBSET_NAME_LABEL}={name}")
    except Exception as exc:
        log.debug("cannot list pods of %s: %s", name, exc)
        return
    for pod in sorted(p.metadata.name for p in pods.items):
        try:
            lines = core.read_namespaced_pod_log(pod, namespace).splitlines()
        except Exception as exc:  # pending pods have no logs yet
            log.debug("no logs yet for %s: %s", pod, exc)
            continue
        for line in lines[seen.get(pod, 0) :]:
            print(f"[{pod}] {line}", flush=True)
        seen[pod] = len(lines)


def _watch_once(
    custom,
    res: Resource,
    namespace: str,
    name: str,
    seconds: int,
    on_event: Callable[[dict], None],
) -> dict | None:
    """Follow ``name`` for up to ``seconds``, calling ``on_event`` with each new state;
    return the latest state (early once it is terminal)."""
    latest = None
    stream = watch.Watch()
    for event in stream.stream(
        custom.list_namespaced_custom_object,
        res.group,
        res.version,
        namespace,
        res.plural,
        field_selector=f"metadata.name={name}",
        timeout_seconds=max(1, seconds),
    ):
        if event["type"] == "DELETED":
            stream.stop()
            raise LaunchError(f"{res.kind} {namespace}/{name} was deleted by someone else")
        latest = event["object"]
        on_event(latest)
        if terminal(res, latest)[0]:
            stream.stop()
    return latest


def launch(
    res: Resource,
    body: dict,
    timeout_s: int,
    api=None,
    poll_s: float = 15.0,
    on_state: Callable[[dict], None] | None = None,
    stream_logs: bool = True,
) -> JobOutcome:
    """Create ``body`` and wait for a terminal condition.

    Args:
        res: the resource kind and what its conditions mean.
        body: the manifest (``metadata.name`` / ``namespace`` set).
        timeout_s: give up after this long and delete the job.
        api: a ``kubernetes.client.ApiClient`` (default: in-cluster config).
        poll_s: longest time one watch stays open before the deadline is checked.
        on_state: called with each new status of the object.
        stream_logs: print the pods' log lines as they grow (on each status
            change and at least every ``poll_s``).

    Raises:
        LaunchError: failed (with the controller's reason and message and the
            failed pod's last log lines), timed out, deleted, or cancelled.
    """
    api = api_client(api)
    custom, core = k8s.CustomObjectsApi(api), k8s.CoreV1Api(api)
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    start = time.monotonic()
    finished = False
    seen_logs: dict[str, int] = {}
    last_status: list = [None]

    def on_event(obj: dict) -> None:
        status = obj.get("status") or {}
        if status != last_status[0]:
            last_status[0] = status
            log.info("%s %s: %s", res.kind, name, [c.get("type") for c in true_conditions(obj)])
            if on_state:
                on_state(obj)
            if stream_logs:
                print_new_logs(core, namespace, name, seen_logs)

    with sigterm_raises():
        try:
            custom.create_namespaced_custom_object(
                res.group, res.version, namespace, res.plural, body
            )
            log.info("created %s %s/%s", res.kind, namespace, name)
            last, errors = None, 0
            while True:
                left = timeout_s - (time.monotonic() - start)
                if left <= 0:
                    raise LaunchError(
                        f"{res.kind} {namespace}/{name} did not finish within {timeout_s} s "
                        f"(last conditions: {[c.get('type') for c in true_conditions(last)]}); "
                        "deleted it"
                    )
                window = int(min(poll_s, left)) or 1
                try:
                    obj = _watch_once(custom, res, namespace, name, window, on_event)
                    if obj is None:  # no event in this window: read it directly
                        obj = custom.get_namespaced_custom_object(
                            res.group, res.version, namespace, res.plural, name
                        )
                        on_event(obj)
                    errors = 0
                except (k8s.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                    # an API server restart or a dropped watch must not cost the job
                    errors += 1
                    if errors > MAX_API_ERRORS:
                        raise LaunchError(
                            f"lost {res.kind} {namespace}/{name}: {errors} API errors in a row, "
                            f"last: {exc}; deleted it"
                        ) from None
                    log.warning("API error while waiting for %s (%d): %s", name, errors, exc)
                    time.sleep(min(poll_s, 2.0 * errors))
                    continue
                if stream_logs:
                    print_new_logs(core, namespace, name, seen_logs)
                last = obj
                state, reason, message = terminal(res, obj)
                if state == "succeeded":
                    finished = True
                    return JobOutcome(name, True, reason, time.monotonic() - start, {})
                if state == "failed":
                    finished = True
                    raise LaunchError(
                        f"{res.kind} {namespace}/{name} failed: reason={reason or '?'}: "
                        f"{message or '(none)'}" + failed_pod_logs(core, namespace, name)
                    )
        except (Cancelled, KeyboardInterrupt) as exc:
            raise LaunchError(
                f"launcher cancelled ({exc}); deleted {res.kind} {namespace}/{name}"
            ) from None
        finally:
            if not finished:
                delete_quietly(custom, res, namespace, name)


def delete_quietly(custom, res: Resource, namespace: str, name: str) -> None:
    """Delete the job and its pods (foreground propagation); never raise."""
    try:
        custom.delete_namespaced_custom_object(
            res.group,
            res.version,
            namespace,
            res.plural,
            name,
            body=k8s.V1DeleteOptions(propagation_policy="Foreground"),
        )
        log.warning("deleted %s %s/%s", res.kind, namespace, name)
    except Exception as exc:  # the job may never have been created
        log.warning("could not delete %s %s/%s: %s", res.kind, namespace, name, exc)


def dropped_fields(sent, kept, path: str = "") -> list[str]:
    """Paths present in ``sent`` but missing (or changed) in ``kept``."""
    if isinstance(sent, dict):
        kept = kept if isinstance(kept, dict) else {}
        return [p for k, v in sent.items() for p in dropped_fields(v, kept.get(k), f"{path}.{k}")]
    if isinstance(sent, list):
        kept = kept if isinstance(kept, list) else []
        out = [] if len(kept) == len(sent) else [f"{path}[] (length)"]
        return out + [
            p
            for i, v in enumerate(sent)
            for p in dropped_fields(v, kept[i : i + 1] and kept[i], f"{path}[{i}]")
        ]
    return [] if sent == kept else [path or "."]


def check_against_model(model_cls, body: dict, what: str):
    """Parse ``body`` with an API model of ``kubeflow-trainer-api``; reject unknown fields.

    The generated pydantic models check types and required fields but silently
    drop fields they do not know, so the parsed object is serialized back and
    compared: any field that did not survive is a typo or a field of another
    API version.

    Raises:
        ConfigError: naming the manifest and the offending field paths.
    """
    from pydantic import ValidationError

    from tfopt.errors import ConfigError

    try:
        model = model_cls.from_dict(body)
    except ValidationError as exc:
        raise ConfigError(f"{what} does not match {model_cls.__name__}: {exc}") from None
    dropped = dropped_fields(body, model.to_dict())
    if dropped:
        raise ConfigError(
            f"{what} has fields {model_cls.__name__} does not know: {', '.join(dropped[:10])}"
        )
    return model
