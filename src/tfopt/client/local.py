"""Run a pipeline locally with KFP's local runner and collect its summary."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import warnings
from typing import Any

from tfopt import fsutil
from tfopt.client.runlog import run_output
from tfopt.client.warm import WarmStart

log = logging.getLogger(__name__)


def run_local(
    params: dict[str, Any],
    output_dir: str,
    pipeline: str = "optimize",
    enable_caching: bool = False,
    verbose: bool = False,
    warm: bool | WarmStart = True,
    runner: str = "subprocess",
    parallelism: int = 0,
) -> dict:
    """Run a pipeline with KFP's local SubprocessRunner; write ``output_dir/summary.json``.

    Artifacts stay under ``output_dir/artifacts/<run>/``; the summary's paths
    point there; each step's output goes to ``output_dir/logs/<step>.log``. The
    console shows one progress line per step (``verbose``: every step's output
    too). ``warm``: fork the steps from one pre-imported parent (``client/warm.py``); a
    ``WarmStart`` the caller already entered (started early, so that its imports overlap
    the caller's checks) is used as it is, and the caller stops it.
    ``runner="docker"``: every step in the image the pipeline names (``client/docker.py``).
    ``parallelism``: steps at the same time (``client/concurrent_dag.py``); 0 = as many as
    the cores and the memory allow (:func:`default_parallelism`).
    Returns the summary.
    """
    from kfp import local

    from tfopt.client import docker, user_files
    from tfopt.client.concurrent_dag import concurrent_dags
    from tfopt.client.params import validate_params
    from tfopt.client.preflight import check_pipeline_params
    from tfopt.client.warm import enabled
    from tfopt.pipelines.compile import pipeline_function

    params = validate_params(params, pipeline)
    check_pipeline_params(params, pipeline, local=True)  # before any step: no retries, no files
    func = pipeline_function(pipeline)
    output_dir = os.path.abspath(output_dir)
    if "serving_base_path" in func.component_spec.inputs and not params.get("serving_base_path"):
        # a repository that outlives the run, so versions increase run after run
        params["serving_base_path"] = os.path.join(output_dir, "serving")
    os.makedirs(output_dir, exist_ok=True)
    params = user_files.stage_module_file(params, os.path.join(output_dir, "artifacts"))
    engine = contextlib.ExitStack()  # runner "docker": the container engine, held for the run
    kfp_runner = (
        engine.enter_context(docker.runner(output_dir, params, func.pipeline_spec))
        if runner == "docker"
        else local.SubprocessRunner(use_venv=False)
    )
    local.init(
        runner=kfp_runner,
        pipeline_root=os.path.join(output_dir, "artifacts"),
        raise_on_error=True,
        enable_caching=enable_caching,
        cache_root=os.path.join(output_dir, "cache") if enable_caching else None,
    )
    start = time.perf_counter()
    hits = _CacheHits()
    parallelism = check_parallelism(parallelism) or default_parallelism()
    runlog = run_output(func.pipeline_spec, params, output_dir, verbose, parallelism > 1)
    os.makedirs(os.path.join(output_dir, "logs"), exist_ok=True)
    starter: contextlib.AbstractContextManager = contextlib.nullcontext()
    if runner == "subprocess" and not isinstance(warm, WarmStart) and enabled(warm):
        starter = WarmStart.for_run(output_dir)
    # the engine outlives the steps; kfp warns about non-"python" images
    slots = concurrent_dags(parallelism)
    with engine, warnings.catch_warnings(), hits, runlog, starter, slots:
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        if not verbose:  # cluster-only settings (resources, display names) the local run ignores
            warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
        try:
            task = func(**params)
        except RuntimeError as exc:  # kfp's "Pipeline ... Inner task failed: 'step'"
            raise runlog.failure(exc) from None
    summary = fsutil.read_json(task.output.path)
    if enable_caching:
        summary["cached_steps"] = hits.steps
    summary["serving"] = serving_entry(os.path.dirname(os.path.dirname(task.output.path)))
    html = summary.get("report_html")
    if html and not html.endswith(".html") and os.path.isfile(html):
        # KFP names the HTML artifact's file without an extension; browsers need one
        summary["report_html"] = os.path.join(output_dir, "report.html")
        with open(html, "rb") as src, fsutil.atomic_file(summary["report_html"], "wb") as dst:
            dst.write(src.read())
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    summary["parallelism"] = parallelism
    summary["params"] = params
    fsutil.write_json(os.path.join(output_dir, "summary.json"), summary)
    return summary


# Peak memory of one step, measured on the default run (0.70 GiB per process) with room:
# the bound on how many run at once.
STEP_PEAK_BYTES = 1 << 30


def default_parallelism() -> int:
    """As many steps at once as there are cores, while each can have ``STEP_PEAK_BYTES``
    of the memory available now."""
    from tfopt.client.concurrent_dag import usable_cores

    cores = usable_cores()
    try:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        available = int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        available = STEP_PEAK_BYTES
    return max(1, min(cores, available // STEP_PEAK_BYTES))


def check_parallelism(value: object, where: str = "parallelism") -> int:
    """``value`` if it is a count of steps (0 = automatic), else a ConfigError."""
    from tfopt.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 256:
        raise ConfigError(
            f"{where}={value!r} is not allowed: expected an integer in [0, 256] "
            "(0 = as many as the cores and memory allow)"
        )
    return value


class _CacheHits(logging.Filter):
    """Collect the tasks kfp.local served from its cache, in order.

    kfp 2.17 (``kfp.local.orchestrator.task_executor``) reports a hit only as a
    root-logger record ``Task <name> cache hit (key=...); skipping execution.``,
    so this filter sits on the root logger for the duration of the run. Where
    the root level hides INFO it is lowered for the run, and records below the
    caller's level are still dropped (root filter + a filter on each handler).
    """

    _PATTERN = re.compile(r"^Task (\S+) cache hit \(key=")

    def __init__(self) -> None:
        super().__init__()
        self.steps: list[str] = []
        self._level = logging.NOTSET
        self._handlers: list[logging.Handler] = []

    def filter(self, record: logging.LogRecord) -> bool:
        match = self._PATTERN.match(str(record.msg))
        if match and match.group(1) not in self.steps:
            self.steps.append(match.group(1))
        return record.levelno >= self._level

    def __enter__(self) -> _CacheHits:
        root = logging.getLogger()
        self._level = root.level
        root.addFilter(self)
        if root.getEffectiveLevel() > logging.INFO:
            self._handlers = list(root.handlers)
            for handler in self._handlers:
                handler.addFilter(self)
            root.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        root = logging.getLogger()
        root.removeFilter(self)
        for handler in self._handlers:
            handler.removeFilter(self)
        root.setLevel(self._level)


def serving_entry(run_dir: str) -> dict | None:
    """The TF Serving deployment of a local run, from its deploy step's executor output.

    ``None`` when the deploy branch did not run (not blessed, or another target).
    """
    for root, _, files in os.walk(run_dir):
        if os.path.basename(root) == "deploy-tf-serving" and "executor_output.json" in files:
            out = fsutil.read_json(os.path.join(root, "executor_output.json"))
            for artifact in out.get("artifacts", {}).get("manifests", {}).get("artifacts", []):
                meta = artifact.get("metadata", {})
                entry = {
                    k: meta.get(k)
                    for k in (
                        "model_base_path",
                        "model_name",
                        "version",
                        "grpc_port",
                        "rest_port",
                        "smoke_test",
                        "rollback_version",
                    )
                }
                for key in (
                    "version",
                    "grpc_port",
                    "rest_port",
                    "rollback_version",
                ):  # metadata numbers are floats
                    entry[key] = int(entry[key]) if entry[key] is not None else None
                return entry
    return None
