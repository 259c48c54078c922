"""Vertex AI custom job specs, checked by building aiplatform_v1 CustomJob protos."""

import signal
import threading
import time
from typing import ClassVar

import pytest
from google.cloud.aiplatform_v1 import types

from tfopt.errors import ConfigError
from tfopt.launch import tfjob, validate, vertex_job

from helpers.signals import callers_sigterm_handler, sigterm_when


def make_config(replicas=3, gpus=2, accel="NVIDIA_TESLA_T4", **kw):
    req = validate.TrainingRequest("vertex", replicas, gpus, accel)
    cmd = tfjob.worker_command("gs://b/ds", "gs://b/m", {"epochs": 2})
    return vertex_job.VertexJobConfig(
        display_name="tfopt-train", image="img:1", command=tuple(cmd), request=req, **kw
    )


def test_worker_pools_as_custom_job_proto():
    job = vertex_job.custom_job_proto(make_config(machine_type="g2-standard-8"))
    assert isinstance(job, types.CustomJob)
    # Round-trip through the wire format: what the API would receive.
    again = types.CustomJob.deserialize(types.CustomJob.serialize(job))
    chief, workers = again.job_spec.worker_pool_specs
    assert (chief.replica_count, workers.replica_count) == (1, 2)
    for pool in (chief, workers):
        assert pool.machine_spec.machine_type == "g2-standard-8"
        assert pool.machine_spec.accelerator_type == types.AcceleratorType.NVIDIA_TESLA_T4
        assert pool.machine_spec.accelerator_count == 2
        assert pool.container_spec.image_uri == "img:1"
        assert list(pool.container_spec.command[:3]) == ["python", "-m", "tfopt.launch.worker"]
    assert again.job_spec.scheduling.timeout.total_seconds() == 21600
    assert again.job_spec.scheduling.restart_job_on_worker_restart


def test_single_cpu_replica():
    job = vertex_job.custom_job_proto(make_config(replicas=1, gpus=0))
    (pool,) = job.job_spec.worker_pool_specs
    assert pool.replica_count == 1 and pool.machine_spec.accelerator_count == 0
    assert pool.machine_spec.accelerator_type == types.AcceleratorType.ACCELERATOR_TYPE_UNSPECIFIED


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"boot_disk_gb": 10}, "boot_disk_gb=10"),
        ({"labels": {"Bad Key": "x"}}, "labels"),
        ({"machine_type": ""}, "machine_type"),
    ],
)
def test_bad_config(kw, match):
    with pytest.raises(ConfigError, match=match):
        make_config(**kw)


class FakeCustomJob:
    """Stand-in for google.cloud.aiplatform.CustomJob (the cloud API boundary)."""

    instances: ClassVar[list] = []

    def __init__(self, display_name, worker_pool_specs, project, location, staging_bucket, labels):
        # The specs must be what Vertex AI's proto accepts.
        types.CustomJobSpec(worker_pool_specs=worker_pool_specs)
        self.kwargs = dict(display_name=display_name, project=project, location=location)
        self.run_kwargs, self.cancelled = None, False
        self.running = threading.Event()
        FakeCustomJob.instances.append(self)

    def run(self, **kwargs):
        self.run_kwargs = kwargs
        self.running.set()
        if self.kwargs["display_name"] == "fails":
            raise RuntimeError("Job failed with:\ncode: 3\nmessage: replica workerpool1-0 exited 1")
        if self.kwargs["display_name"] == "hangs":
            time.sleep(30)

    def cancel(self):
        self.cancelled = True


def test_run_custom_job_success_and_failure():
    secs = vertex_job.run_custom_job(
        make_config(), "proj", "us-central1", "gs://b/stage", custom_job_cls=FakeCustomJob
    )
    job = FakeCustomJob.instances[-1]
    assert secs >= 0 and job.run_kwargs["timeout"] == 21600 and job.run_kwargs["sync"]
    failing = make_config()
    object.__setattr__(failing, "display_name", "fails")
    with pytest.raises(tfjob.LaunchError, match="workerpool1-0 exited 1"):
        vertex_job.run_custom_job(failing, "p", "l", "gs://b", custom_job_cls=FakeCustomJob)
    with pytest.raises(ConfigError, match="staging_bucket"):
        vertex_job.run_custom_job(make_config(), "p", "l", "/local", custom_job_cls=FakeCustomJob)


def test_sigterm_cancels_custom_job():
    cfg = make_config()
    object.__setattr__(cfg, "display_name", "hangs")
    FakeCustomJob.instances.clear()
    with callers_sigterm_handler() as callers:

        def running_with_its_handler_in():
            return (
                signal.getsignal(signal.SIGTERM) is not callers
                and bool(FakeCustomJob.instances)
                and FakeCustomJob.instances[-1].running.is_set()
            )

        with (
            sigterm_when(running_with_its_handler_in, "the job runs") as sent,
            pytest.raises(tfjob.LaunchError, match="cancelled"),
        ):
            vertex_job.run_custom_job(cfg, "p", "l", "gs://b", custom_job_cls=FakeCustomJob)
        assert sent.is_set()
        assert signal.getsignal(signal.SIGTERM) is callers  # the caller's handler is back
    assert FakeCustomJob.instances[-1].cancelled


def test_vertex_paths_must_be_gcs():
    req = validate.TrainingRequest("vertex", 2, 0)
    with pytest.raises(ConfigError, match="gs://"):
        vertex_job.train_on_vertex("/data/ds", "gs://b/m", {}, req, "img", "p", "l", "gs://b")
