"""Vertex AI custom job: worker pool specs for a multi-worker TFJob-equivalent.

Pool 0 is the chief (one replica), pool 1 the other workers; Vertex AI sets
``TF_CONFIG`` on each replica (``chief`` / ``worker``), which
:func:`tfopt.distribute.parse_tf_config` reads. Specs are checked by
building ``google.cloud.aiplatform_v1.types.CustomJob`` from them before
anything is submitted.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import time
from dataclasses import dataclass, field

from tfopt.checks import check_int, check_str
from tfopt.errors import ConfigError
from tfopt.launch import validate
from tfopt.launch.job import LaunchError, job_name

log = logging.getLogger(__name__)

_LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class VertexJobConfig:
    """A Vertex AI custom job's shape.

    Attributes:
        display_name: job name shown in the console.
        image: container image of every replica (the project's GPU image).
        command: the replica's command (``python -m tfopt.launch.worker ...``).
        request: target ('vertex'), replicas, GPUs per replica, accelerator type.
        machine_type: Compute Engine machine type of every replica.
        boot_disk_gb: boot disk size per replica.
        timeout_s: the job's ``scheduling.timeout`` and the launcher's wait, in seconds.
        restart_on_worker_restart: restart all replicas when one restarts
            (MultiWorkerMirroredStrategy cannot continue with one missing).
        labels: job labels.
    """

    display_name: str
    image: str
    command: tuple[str, ...]
    request: validate.TrainingRequest
    machine_type: str = "n1-standard-8"
    boot_disk_gb: int = 100
    timeout_s: int = 6 * 3600
    restart_on_worker_restart: bool = True
    labels: dict = field(default_factory=dict)

    def __post_init__(self):
        name = "VertexJobConfig"
        check_str(name, "display_name", self.display_name)
        check_str(name, "image", self.image)
        check_str(name, "machine_type", self.machine_type)
        if not self.command or not all(isinstance(c, str) for c in self.command):
            raise ConfigError(
                f"{name}.command={self.command!r} is not allowed: expected a "
                "non-empty list of strings"
            )
        if self.request.target != "vertex":
            raise ConfigError(
                f"{name}.request.target={self.request.target!r} is not allowed: expected 'vertex'"
            )
        check_int(name, "boot_disk_gb", self.boot_disk_gb, 100, 64_000)
        check_int(name, "timeout_s", self.timeout_s, 60, 30 * 24 * 3600)
        for key, value in self.labels.items():
            if not _LABEL_RE.match(str(key)) or not re.match(r"^[a-z0-9_-]{0,63}$", str(value)):
                raise ConfigError(
                    f"{name}.labels[{key!r}]={value!r} is not allowed: lowercase "
                    "letters, digits, '_' and '-' (keys start with a letter)"
                )


def worker_pool_specs(config: VertexJobConfig) -> list[dict]:
    """Chief pool (1 replica) plus, for ``replicas > 1``, a worker pool of the rest."""
    req = config.request
    machine: dict[str, str | int] = {"machine_type": config.machine_type}
    if req.gpus_per_replica:
        machine.update(
            accelerator_type=req.accelerator_type, accelerator_count=req.gpus_per_replica
        )
    pool = {
        "machine_spec": machine,
        "disk_spec": {"boot_disk_type": "pd-ssd", "boot_disk_size_gb": config.boot_disk_gb},
        "container_spec": {
            "image_uri": config.image,
            "command": list(config.command),
            "env": [{"name": "PYTHONUNBUFFERED", "value": "1"}],
        },
    }
    specs = [{**pool, "replica_count": 1}]
    if req.replicas > 1:
        specs.append({**pool, "replica_count": req.replicas - 1})
    return specs


def custom_job_proto(config: VertexJobConfig):
    """The ``aiplatform_v1.types.CustomJob`` message (raises ConfigError if Vertex AI
    would reject a field name or enum value)."""
    from google.cloud.aiplatform_v1 import types

    try:
        return types.CustomJob(
            display_name=config.display_name,
            labels=dict(config.labels),
            job_spec=types.CustomJobSpec(
                worker_pool_specs=worker_pool_specs(config),
                scheduling=types.Scheduling(
                    timeout=f"{config.timeout_s}s",
                    restart_job_on_worker_restart=config.restart_on_worker_restart,
                ),
            ),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"VertexJobConfig does not make a valid CustomJob: {exc}") from None


@contextlib.contextmanager
def _sigterm_cancels(job):
    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_custom_job(
    config: VertexJobConfig,
    project: str,
    location: str,
    staging_bucket: str,
    service_account: str = "",
    custom_job_cls=None,
) -> float:
    """Submit the custom job, wait for it and return its wall time in seconds.

    ``custom_job_cls`` defaults to ``google.cloud.aiplatform.CustomJob``. A
    failed job raises :class:`LaunchError` with Vertex AI's error; a SIGTERM
    (pipeline cancelled) cancels the job.
    """
    custom_job_proto(config)  # fail on bad specs before talking to the API
    check_str("run_custom_job", "project", project)
    check_str("run_custom_job", "location", location)
    if not staging_bucket.startswith("gs://"):
        raise ConfigError(
            f"run_custom_job.staging_bucket={staging_bucket!r} is not allowed: "
            "expected gs://bucket[/path]"
        )
    if custom_job_cls is None:
        from google.cloud import aiplatform

        custom_job_cls = aiplatform.CustomJob
    job = custom_job_cls(
        display_name=config.display_name,
        worker_pool_specs=worker_pool_specs(config),
        project=project,
        location=location,
        staging_bucket=staging_bucket,
        labels=dict(config.labels),
    )
    start = time.monotonic()
    with _sigterm_cancels(job):
        try:
            job.run(
                service_account=service_account or None,
                timeout=config.timeout_s,
                restart_job_on_worker_restart=config.restart_on_worker_restart,
                sync=True,
            )
        except KeyboardInterrupt as exc:
            with contextlib.suppress(Exception):
                job.cancel()
            raise LaunchError(
                f"launcher cancelled ({exc}); cancelled custom job {config.display_name}"
            ) from None
        except RuntimeError as exc:
            raise LaunchError(f"Vertex AI custom job {config.display_name} failed: {exc}") from None
    return time.monotonic() - start


def train_on_vertex(
    dataset_uri: str,
    model_uri: str,
    train_config: dict,
    request: validate.TrainingRequest,
    image: str,
    project: str,
    location: str,
    staging_bucket: str,
    machine_type: str = "n1-standard-8",
    timeout_s: int = 6 * 3600,
    service_account: str = "",
    custom_job_cls=None,
) -> dict:
    """Validate, run a custom job that trains ``dataset_uri`` into ``model_uri``, wait.

    Returns the chief's TrainResult as a dict (read from ``<model_uri>.result.json``).
    """
    from tfopt import fsutil
    from tfopt.launch.pod import worker_command

    for what, uri in (("dataset_uri", dataset_uri), ("model_uri", model_uri)):
        if not uri.startswith("gs://"):
            raise ConfigError(
                f"train_on_vertex.{what}={uri!r} is not allowed: Vertex AI "
                "replicas read and write gs:// URIs"
            )
    result_uri = model_uri.rstrip("/") + ".result.json"
    config = VertexJobConfig(
        display_name=job_name(),
        image=image,
        machine_type=machine_type,
        timeout_s=timeout_s,
        request=request,
        labels={"app": "tfopt"},
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
    seconds = run_custom_job(
        config, project, location, staging_bucket, service_account, custom_job_cls=custom_job_cls
    )
    log.info("custom job %s succeeded in %.0f s", config.display_name, seconds)
    return fsutil.read_json(result_uri) if fsutil.exists(result_uri) else {}
