"""Kubeflow training-operator v1 TFJob (legacy): build the spec, launch it, wait, clean up.

Training Operator v1 is no longer maintained; new clusters run Kubeflow Trainer
v2 (:mod:`tfopt.launch.trainjob`) or bare JobSet (:mod:`tfopt.launch.jobset`).
This target stays for old clusters.

The spec is built from the kubeflow-training SDK's own models
(``KubeflowOrgV1TFJob`` ...) and the kubernetes client's ``V1PodTemplateSpec``,
so a typo in a field name fails here, not on the cluster. ``launch_tfjob``
creates the job with ``kubeflow.training.TrainingClient``, polls its status,
prints replica logs, enforces a timeout, turns a failed replica into a
:class:`LaunchError` carrying the operator's reason, and deletes the job when
the run ends early (timeout, SIGTERM on cancel, Ctrl-C).

The replica pod and its command (:mod:`tfopt.launch.pod`) and the job's name, outcome,
error and cancellation (:mod:`tfopt.launch.job`) are shared with the other launchers.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field

from kubeflow.training import models as ktm
from kubernetes import client as k8s

from tfopt.checks import check_int, check_str
from tfopt.errors import ConfigError
from tfopt.launch import validate
from tfopt.launch.job import Cancelled, JobOutcome, LaunchError, job_name, sigterm_raises
from tfopt.launch.pod import pod_template, to_dict, worker_command

log = logging.getLogger(__name__)

TFJOB_API_VERSION = "kubeflow.org/v1"
TFJOB_KIND = "TFJob"
CONTAINER_NAME = "tensorflow"  # the operator injects TF_CONFIG into this container
_NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$")


@dataclass(frozen=True)
class TFJobConfig:
    """A TFJob's shape.

    Attributes:
        name: Kubernetes object name (DNS label).
        namespace: Kubernetes namespace the job runs in.
        image: container image of every replica (the project's GPU image).
        command: the replica's command (``python -m tfopt.launch.worker ...``).
        request: target, replicas (chief + workers), GPUs per replica, accelerator.
        cpu / memory: per-replica CPU and memory requests in Kubernetes quantities
            (``4``, ``16Gi``; limits: memory = request).
        timeout_s: ``activeDeadlineSeconds`` of the job and the launcher's wait, in seconds.
        backoff_limit: restarts of failed replicas before the job fails.
        node_selector / tolerations: extra scheduling constraints.
        service_account: pod service account ("" = namespace default).
        labels: extra labels on the job and its pods.
    """

    name: str
    image: str
    command: tuple[str, ...]
    request: validate.TrainingRequest
    namespace: str = "kubeflow"
    cpu: str = "4"
    memory: str = "16Gi"
    timeout_s: int = 6 * 3600
    backoff_limit: int = 3
    node_selector: dict = field(default_factory=dict)
    tolerations: tuple[dict, ...] = ()
    service_account: str = ""
    labels: dict = field(default_factory=dict)

    def __post_init__(self):
        name = "TFJobConfig"
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ConfigError(
                f"{name}.name={self.name!r} is not allowed: expected a DNS label "
                "(lowercase letters, digits, '-', at most 52 characters)"
            )
        check_str(name, "image", self.image)
        check_str(name, "namespace", self.namespace)
        if not self.command or not all(isinstance(c, str) for c in self.command):
            raise ConfigError(
                f"{name}.command={self.command!r} is not allowed: expected a "
                "non-empty list of strings"
            )
        if self.request.target != "tfjob":
            raise ConfigError(
                f"{name}.request.target={self.request.target!r} is not allowed: expected 'tfjob'"
            )
        check_int(name, "timeout_s", self.timeout_s, 60, 30 * 24 * 3600)
        check_int(name, "backoff_limit", self.backoff_limit, 0, 100)
        for value, what in ((self.cpu, "cpu"), (self.memory, "memory")):
            if not isinstance(value, str) or not re.match(
                r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$", value
            ):
                raise ConfigError(
                    f"{name}.{what}={value!r} is not allowed: expected a "
                    "Kubernetes quantity such as '4', '500m', '16Gi'"
                )


def build_tfjob(config: TFJobConfig) -> ktm.KubeflowOrgV1TFJob:
    """The TFJob: one Chief plus ``replicas - 1`` Workers of the same pod template.

    Replicas restart on retryable exit codes (``ExitCode`` policy: killed or
    preempted pods); a restarted cluster resumes from the BackupAndRestore
    checkpoint the chief keeps.
    """
    specs = {
        "Chief": ktm.KubeflowOrgV1ReplicaSpec(
            replicas=1,
            restart_policy="ExitCode",
            template=pod_template(config, "Chief", CONTAINER_NAME),
        )
    }
    if config.request.replicas > 1:
        specs["Worker"] = ktm.KubeflowOrgV1ReplicaSpec(
            replicas=config.request.replicas - 1,
            restart_policy="ExitCode",
            template=pod_template(config, "Worker", CONTAINER_NAME),
        )
    return ktm.KubeflowOrgV1TFJob(
        api_version=TFJOB_API_VERSION,
        kind=TFJOB_KIND,
        metadata=k8s.V1ObjectMeta(
            name=config.name,
            namespace=config.namespace,
            labels={**config.labels, "app.kubernetes.io/part-of": "tfopt"},
        ),
        spec=ktm.KubeflowOrgV1TFJobSpec(
            tf_replica_specs=specs,
            run_policy=ktm.KubeflowOrgV1RunPolicy(
                active_deadline_seconds=config.timeout_s,
                backoff_limit=config.backoff_limit,
                clean_pod_policy="Running",
                ttl_seconds_after_finished=24 * 3600,
            ),
        ),
    )


def pod_manifests(job: ktm.KubeflowOrgV1TFJob) -> list[dict]:
    """Each replica's pod template as a standalone ``Pod`` manifest (for static checks)."""
    out = []
    for rtype, spec in job.spec.tf_replica_specs.items():
        tmpl = to_dict(spec.template)
        meta = {
            **tmpl.get("metadata", {}),
            "name": f"{job.metadata.name}-{rtype.lower()}-0",
            "namespace": job.metadata.namespace,
        }
        out.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": tmpl["spec"]})
    return out


# ----------------------------------------------------------------------------- launching


def _condition(job) -> tuple[str, str, str]:
    """Latest true condition as (type, reason, message)."""
    conds = [
        c for c in (job.status.conditions if job.status else None) or [] if str(c.status) == "True"
    ]
    if not conds:
        return "", "", ""
    last = conds[-1]
    return last.type or "", last.reason or "", last.message or ""


def _replica_statuses(job) -> dict:
    rs = (job.status.replica_statuses if job.status else None) or {}
    return {
        k: {"active": v.active or 0, "succeeded": v.succeeded or 0, "failed": v.failed or 0}
        for k, v in rs.items()
    }


def _print_logs(
    client, name: str, namespace: str, replica_type: str | None, seen: dict[str, int]
) -> dict[str, str]:
    """Print new log lines of the job's pods (all, or one replica type); return the logs."""
    try:
        logs, _ = client.get_job_logs(
            name, namespace=namespace, is_master=False, replica_type=replica_type
        )
    except Exception as exc:  # logs are best effort: pods may be gone or pending
        log.debug("no logs yet for %s: %s", name, exc)
        return {}
    for pod, text in sorted(logs.items()):
        lines = text.splitlines()
        for line in lines[seen.get(pod, 0) :]:
            print(f"[{pod}] {line}", flush=True)
        seen[pod] = len(lines)
    return logs


def launch_tfjob(
    job: ktm.KubeflowOrgV1TFJob,
    client=None,
    timeout_s: int | None = None,
    poll_s: float = 15.0,
    stream_logs: bool = True,
) -> JobOutcome:
    """Create ``job``, wait for it to finish and return its outcome.

    Args:
        job: a TFJob from :func:`build_tfjob`.
        client: a ``kubeflow.training.TrainingClient`` (default: in-cluster config).
        timeout_s: give up (and delete the job) after this long; defaults to the
            job's ``activeDeadlineSeconds``.
        poll_s: seconds between status checks.
        stream_logs: print replica logs as they grow.

    Raises:
        LaunchError: the job failed (message names the failed replica type and
            the operator's reason and message, plus the tail of its logs), timed
            out, or the launcher was cancelled; in the last two cases the job is
            deleted first.
    """
    from kubeflow.training import TrainingClient

    name, namespace = job.metadata.name, job.metadata.namespace
    client = client or TrainingClient(namespace=namespace, job_kind=TFJOB_KIND)
    timeout_s = timeout_s or job.spec.run_policy.active_deadline_seconds or 6 * 3600
    start = time.monotonic()
    seen: dict[str, int] = {}
    finished = False
    with sigterm_raises():
        try:
            client.create_job(job=job, namespace=namespace)
            log.info(
                "created TFJob %s/%s (%s)",
                namespace,
                name,
                ", ".join(f"{k} x{v.replicas}" for k, v in job.spec.tf_replica_specs.items()),
            )
            last_state = None
            while True:
                current = client.get_job(name, namespace=namespace, job_kind=TFJOB_KIND)
                ctype, reason, message = _condition(current)
                statuses = _replica_statuses(current)
                if (ctype, statuses) != last_state:
                    log.info("TFJob %s: %s %s", name, ctype or "Pending", statuses)
                    last_state = (ctype, statuses)
                if stream_logs:
                    _print_logs(client, name, namespace, None, seen)
                if ctype == "Succeeded":
                    finished = True
                    return JobOutcome(name, True, reason, time.monotonic() - start, statuses)
                if ctype == "Failed":
                    finished = True
                    raise LaunchError(_failure_message(client, current, reason, message, statuses))
                if time.monotonic() - start > timeout_s:
                    raise LaunchError(
                        f"TFJob {namespace}/{name} did not finish within "
                        f"{timeout_s} s (last state: {ctype or 'Pending'} "
                        f"{statuses}); deleted it"
                    )
                time.sleep(poll_s)
        except (Cancelled, KeyboardInterrupt) as exc:
            raise LaunchError(
                f"launcher cancelled ({exc}); deleted TFJob {namespace}/{name}"
            ) from None
        finally:
            if not finished:
                _delete_quietly(client, name, namespace)


def _failure_message(client, job, reason: str, message: str, statuses: dict) -> str:
    failed = [rtype for rtype, s in statuses.items() if s["failed"]]
    text = (
        f"TFJob {job.metadata.namespace}/{job.metadata.name} failed: replica "
        f"{', '.join(failed) or '?'} failed; reason={reason or '?'}: {message or '(none)'}"
    )
    for rtype in failed[:1]:
        logs = _print_logs(client, job.metadata.name, job.metadata.namespace, rtype.lower(), {})
        for pod, log_text in sorted(logs.items())[:1]:
            tail = "\n".join(log_text.splitlines()[-20:])
            text += f"\n--- last lines of {pod} ---\n{tail}"
    return text


def _delete_quietly(client, name: str, namespace: str) -> None:
    try:
        client.delete_job(name, namespace=namespace, job_kind=TFJOB_KIND)
        log.warning("deleted TFJob %s/%s", namespace, name)
    except Exception as exc:  # the job may never have been created
        log.warning("could not delete TFJob %s/%s: %s", namespace, name, exc)


def train_on_kubeflow(
    dataset_uri: str,
    model_uri: str,
    train_config: dict,
    request: validate.TrainingRequest,
    image: str,
    namespace: str = "kubeflow",
    cpu: str = "4",
    memory: str = "16Gi",
    timeout_s: int = 6 * 3600,
    name: str = "",
    client=None,
    poll_s: float = 15.0,
) -> dict:
    """Validate, launch a TFJob that trains ``dataset_uri`` into ``model_uri``, wait.

    Returns the chief's TrainResult as a dict (read from ``<model_uri>.result.json``).
    """
    from tfopt import fsutil

    validate.check_shared_uri("dataset_uri", dataset_uri)
    validate.check_shared_uri("model_uri", model_uri)
    result_uri = model_uri.rstrip("/") + ".result.json"
    config = TFJobConfig(
        name=name or job_name(),
        image=image,
        namespace=namespace,
        cpu=cpu,
        memory=memory,
        timeout_s=timeout_s,
        request=request,
        command=tuple(
            worker_command(
                dataset_uri,
                model_uri,
                train_config,
                backup_dir=model_uri.rstrip("/") + ".backup",
                result_uri=result_uri,
            )
        ),
    )
    outcome = launch_tfjob(build_tfjob(config), client=client, timeout_s=timeout_s, poll_s=poll_s)
    log.info("TFJob %s succeeded in %.0f s", outcome.name, outcome.seconds)
    return fsutil.read_json(result_uri) if fsutil.exists(result_uri) else {}
