"""Follow a submitted run to its end (``tfopt submit --wait``): one line per finished task,
then the run's ``summary.json`` and an exit status that automation can act on.

Exit statuses (docs/submit.md):

===  ========================================================================
0    the run succeeded and its pick is blessed (it was deployed, or would be)
2    bad input: nothing was submitted (every ``tfopt`` command)
3    the run succeeded but nothing is blessed (no candidate met the policy)
4    the run failed (the failed task is named)
5    the run was cancelled, or ``--timeout`` passed while it still ran
===  ========================================================================

Kubeflow Pipelines: the run's state and task details come from the v2beta1 API
(``kfp.Client.get_run``); its ``summary.json`` is the ``select`` step's ``summary``
artifact, found under ``<pipeline_root>/<pipeline>/<run id>/`` (give ``submit.pipeline_root``
a ``gs://`` or mounted directory this machine reads; KFP's default MinIO root is not read).
Vertex AI: ``PipelineJob.get`` gives the state and every task's outputs, whose ``summary``
artifact URI is read directly.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

EXIT_BLESSED = 0
EXIT_NOT_BLESSED = 3
EXIT_FAILED = 4
EXIT_CANCELLED = 5  # or timed out
EXIT_CODES = {
    EXIT_BLESSED: "succeeded, blessed",
    EXIT_NOT_BLESSED: "succeeded, not blessed",
    EXIT_FAILED: "failed",
    EXIT_CANCELLED: "cancelled or timed out",
}
SELECT_TASK = "select"  # the step whose ``summary`` output is the run's summary.json
_FIGURES = ("accuracy", "f1", "size_bytes", "gzip_bytes", "latency_ms_p50", "latency_ms_p99")

# target -> the states that end a run, by outcome
_DONE = {
    "kfp": {"SUCCEEDED": "succeeded", "SKIPPED": "succeeded", "FAILED": "failed",
            "CANCELED": "cancelled"},
    "vertex": {"PIPELINE_STATE_SUCCEEDED": "succeeded", "PIPELINE_STATE_FAILED": "failed",
               "PIPELINE_STATE_CANCELLED": "cancelled"},
}  # fmt: skip
_TASK_DONE = {"SUCCEEDED", "FAILED", "SKIPPED", "CANCELED", "CANCELLED"}


@dataclasses.dataclass
class Task:
    """One finished task as the target reports it."""

    name: str
    state: str
    error: str = ""
    seconds: float | None = None


@dataclasses.dataclass
class Status:
    """A run's state at one poll: its state name, finished tasks, error, summary URI."""

    state: str
    tasks: list[Task]
    error: str = ""
    summary_uri: str = ""


@dataclasses.dataclass
class Outcome:
    """How a followed run ended (``tfopt submit --wait --json`` prints :meth:`to_dict`)."""

    target: str
    run_id: str
    url: str
    state: str  # succeeded | failed | cancelled | timed_out
    failed_task: str = ""
    error: str = ""
    summary: dict | None = None
    summary_error: str = ""

    @property
    def blessed(self) -> bool | None:
        return None if self.summary is None else bool(self.summary.get("blessed"))

    @property
    def selected(self) -> str | None:
        return None if self.summary is None else self.summary.get("selected")

    @property
    def exit_code(self) -> int:
        if self.state == "failed":
            return EXIT_FAILED
        if self.state != "succeeded":
            return EXIT_CANCELLED
        return EXIT_BLESSED if self.blessed else EXIT_NOT_BLESSED

    def figures(self) -> dict[str, Any]:
        """The selected variant's figures (empty without a summary or a pick)."""
        for v in (self.summary or {}).get("variants", []):
            if v.get("name") == self.selected:
                return {k: v.get(k) for k in _FIGURES if v.get(k) is not None}
        return {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "run_id": self.run_id,
            "url": self.url,
            "state": self.state,
            "exit_code": self.exit_code,
            "selected": self.selected,
            "blessed": self.blessed,
            "figures": self.figures(),
            "failed_task": self.failed_task or None,
            "error": self.error or None,
            "summary_error": self.summary_error or None,
        }


def follow(
    submitted,
    config,
    poll_s: float = 15.0,
    timeout_s: float = 0.0,
    on_task: Callable[[Task], None] = lambda task: None,
    credentials=None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Outcome:
    """Poll the run of ``submitted`` (a ``SubmitResult``) every ``poll_s`` seconds until it
    ends, or ``timeout_s`` (> 0) passes; ``on_task`` gets each task once, as it finishes."""
    status_of = _kfp_status(submitted, config) if submitted.target == "kfp" else (
        _vertex_status(submitted, credentials))  # fmt: skip
    started, seen = clock(), set()
    while True:
        status = status_of()
        for task in status.tasks:
            if task.name not in seen:
                seen.add(task.name)
                on_task(task)
        ended = _DONE[submitted.target].get(status.state)
        if ended:
            return _outcome(submitted, config, status, ended)
        if timeout_s and clock() - started >= timeout_s:
            return Outcome(submitted.target, submitted.run_id, submitted.url, "timed_out",
                           error=f"still {status.state} after {timeout_s:g} s")  # fmt: skip
        sleep(poll_s)


def _outcome(submitted, config, status: Status, ended: str) -> Outcome:
    out = Outcome(submitted.target, submitted.run_id, submitted.url, ended, error=status.error)
    if ended == "failed":
        failed = [t for t in status.tasks if t.state == "FAILED"]
        out.failed_task = failed[0].name if failed else ""
        out.error = (failed[0].error if failed else "") or status.error
        return out
    if ended != "succeeded":
        return out
    uri = status.summary_uri or _kfp_summary_uri(submitted, config)
    if not uri:
        root = config.pipeline_root or "KFP's default (MinIO)"
        out.summary_error = (
            f"no summary.json found under the pipeline root {root}: give submit.pipeline_root "
            "a gs:// or mounted directory this machine can read"
        )
        return out
    from tfopt import fsutil

    try:
        out.summary = fsutil.read_json(uri)
    except (OSError, ValueError) as exc:
        out.summary_error = f"cannot read {uri}: {exc}"
    return out


# ---------------------------------------------------------------- Kubeflow Pipelines
def _kfp_status(submitted, config) -> Callable[[], Status]:
    from tfopt.client.kfp_api import _api_call, kfp_client

    client = kfp_client(config)

    def status() -> Status:
        run = _api_call("KFP get run", client.get_run, run_id=submitted.run_id)
        done = []
        for t in (run.run_details.task_details if run.run_details else None) or []:
            state = str(t.state or "")
            if t.child_tasks or state not in _TASK_DONE or t.display_name in ("root", ""):
                continue  # a DAG (the run, a condition group), or not finished
            task = Task(t.display_name, state, _message(t.error), _seconds(t))
            done.append((str(t.end_time or ""), task))
        tasks = [task for _, task in sorted(done, key=lambda d: d[0])]  # in the order they ended
        return Status(str(run.state or ""), tasks, _message(run.error))

    return status


def _seconds(task) -> float | None:
    if task.end_time and task.start_time:
        return (task.end_time - task.start_time).total_seconds()
    return None


def _message(error) -> str:
    return str(getattr(error, "message", "") or "") if error is not None else ""


def _kfp_summary_uri(submitted, config) -> str:
    """The select step's ``summary`` file under the run's directory of the pipeline root."""
    if submitted.target != "kfp" or not config.pipeline_root:
        return ""
    from tfopt import fsutil

    root = config.pipeline_root.rstrip("/")
    for run_dir in (
        f"{root}/{submitted.pipeline}/{submitted.run_id}",
        f"{root}/{submitted.run_id}",
    ):
        for path in fsutil.iter_files(run_dir):
            parts = path[len(run_dir) :].strip("/").split("/")
            if parts[-1] == "summary" and any(p.startswith(SELECT_TASK) for p in parts[:-1]):
                return path
    return ""


# ---------------------------------------------------------------- Vertex AI
def _vertex_status(submitted, credentials) -> Callable[[], Status]:
    from google.cloud import aiplatform

    from tfopt.client.kfp_api import _api_call

    def status() -> Status:
        job = _api_call(
            "Vertex AI get pipeline job",
            aiplatform.PipelineJob.get,
            submitted.name,
            credentials=credentials,
        )
        res = job.gca_resource
        done, summary_uri = [], ""
        for t in res.job_detail.task_details:
            state = t.state.name if t.state else ""
            if not t.parent_task_id or state not in _TASK_DONE:
                continue  # the run's own DAG, or not finished
            if t.execution.schema_title == "system.DagExecution":
                continue  # a condition group
            task = Task(t.task_name, state, t.error.message, _seconds(t))
            done.append((t.end_time.isoformat() if t.end_time else "", task))
            if t.task_name == SELECT_TASK and "summary" in t.outputs:
                artifacts = t.outputs["summary"].artifacts
                summary_uri = artifacts[0].uri if artifacts else ""
        tasks = [task for _, task in sorted(done, key=lambda d: d[0])]
        return Status(res.state.name, tasks, res.error.message, summary_uri)

    return status
