"""``tfopt run`` (local pipeline run) and ``tfopt compile`` (KFP YAML)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import time
import warnings
from typing import Any

from tfopt import fsutil
from tfopt.errors import ConfigError

log = logging.getLogger(__name__)


def parse_set(items: list[str]) -> dict[str, Any]:
    """``["epochs=5", "xla=true"]`` -> ``{"epochs": 5, "xla": True}`` (YAML scalars)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def run_local(params: dict[str, Any], output_dir: str, pipeline: str = "optimize",
              enable_caching: bool = False) -> dict:
    """Run a pipeline with KFP's local SubprocessRunner; write ``output_dir/summary.json``.

    Artifacts stay under ``output_dir/artifacts/<run>/``; the summary's paths
    point there. Returns the summary.
    """
    from kfp import local

    from tfopt.params import validate_params
    from tfopt.pipelines.compile import pipeline_function

    params = validate_params(params, pipeline)
    func = pipeline_function(pipeline)
    output_dir = os.path.abspath(output_dir)
    if "serving_base_path" in func.component_spec.inputs and not params.get("serving_base_path"):
        # a repository that outlives the run, so versions increase run after run
        params["serving_base_path"] = os.path.join(output_dir, "serving")
    os.makedirs(output_dir, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False),
               pipeline_root=os.path.join(output_dir, "artifacts"),
               raise_on_error=True, enable_caching=enable_caching,
               cache_root=os.path.join(output_dir, "cache") if enable_caching else None)
    start = time.perf_counter()
    hits = _CacheHits()
    with warnings.catch_warnings(), hits:  # the local runner warns about non-"python" images
        warnings.filterwarnings("ignore", message=".*non-Python base image.*")
        task = func(**params)
    summary = fsutil.read_json(task.output.path)
    if enable_caching:
        summary["cached_steps"] = hits.steps
    summary["serving"] = serving_entry(os.path.dirname(os.path.dirname(task.output.path)))
    summary["wall_seconds"] = round(time.perf_counter() - start, 1)
    summary["params"] = params
    fsutil.write_json(os.path.join(output_dir, "summary.json"), summary)
    return summary


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
                entry = {k: meta.get(k) for k in ("model_base_path", "model_name", "version",
                                                  "grpc_port", "rest_port", "smoke_test")}
                for key in ("version", "grpc_port", "rest_port"):  # metadata numbers are floats
                    entry[key] = int(entry[key]) if entry[key] is not None else None
                return entry
    return None


def _cmd_run(args: argparse.Namespace) -> int:
    from tfopt.params import load_params
    from tfopt.summary import format_table

    params = load_params(args.params, args.pipeline, parse_set(args.set))
    summary = run_local(params, args.output_dir, args.pipeline, args.cache)
    print()
    print(format_table(summary))
    verdict = (f"selected: {summary.get('selected')}  blessed: {summary.get('blessed')}"
               if "selected" in summary else "")
    if args.cache:
        cached = summary.get("cached_steps") or []
        print(f"\nreused from cache: {', '.join(cached) if cached else 'none'}")
    print(f"\n{verdict}")
    serving = summary.get("serving")
    if serving:
        print(f"deployed: {serving['model_name']} version {serving['version']} to "
              f"{serving['model_base_path']} (smoke test {serving['smoke_test']}); serve it with "
              f"tfopt serve --model-base-path {serving['model_base_path']} "
              f"--model-name {serving['model_name']}")
    elif summary.get("blessed") is False:
        print("not deployed: no candidate met the selection policy (see rejected reasons)")
    print(f"summary: {os.path.join(os.path.abspath(args.output_dir), 'summary.json')}"
          f"  ({summary['wall_seconds']} s)")
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from tfopt.pipelines.compile import PIPELINES, compile_all, compile_targets

    if args.pipeline:
        paths = compile_targets(args.pipeline, args.output_dir)
    else:
        paths = compile_all(args.output_dir)
    for path in paths:
        print(path)
    log.debug("pipelines: %s", ", ".join(PIPELINES))
    return 0


def register(sub) -> None:
    run = sub.add_parser("run", help="run a pipeline on this machine (KFP local runner)",
                         description="Run a pipeline end to end with KFP's local "
                                     "SubprocessRunner and print the comparison table.")
    run.add_argument("--params", help="YAML/JSON file of pipeline parameters")
    run.add_argument("--set", action="append", metavar="NAME=VALUE",
                     help="override one parameter (repeatable)")
    run.add_argument("--output-dir", default="tfopt-run",
                     help="where artifacts and summary.json go (default: tfopt-run)")
    run.add_argument("--pipeline", default="optimize", help="pipeline name (default: optimize)")
    run.add_argument("--cache", action="store_true",
                     help="reuse outputs of steps whose inputs did not change")
    run.set_defaults(func=_cmd_run)

    comp = sub.add_parser("compile", help="compile pipelines to KFP YAML",
                          description="Write <pipeline>.yaml (Kubeflow Pipelines, with the "
                                      "kfp-kubernetes settings) and <pipeline>.vertex.yaml "
                                      "(Vertex AI Pipelines) for every pipeline.")
    comp.add_argument("--output-dir", required=True, help="directory for <pipeline>.yaml files")
    comp.add_argument("--pipeline", help="compile only this pipeline")
    comp.set_defaults(func=_cmd_compile)



