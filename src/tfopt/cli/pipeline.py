"""``tfopt run`` (local pipeline run) and ``tfopt compile`` (KFP YAML)."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from tfopt.client.local import run_local
from tfopt.errors import ConfigError

log = logging.getLogger(__name__)


def parse_set(items: list[str] | None) -> dict[str, Any]:
    """``["epochs=5", "xla=true"]`` -> ``{"epochs": 5, "xla": True}`` (YAML scalars)."""
    import yaml

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE")
        out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return out


def _cmd_run(args: argparse.Namespace) -> int:
    import contextlib

    from tfopt.client.console import QuietStartup, gpu_visible

    verbose = bool(args.stream or args.verbose)
    # TensorFlow's native start-up lines (CUDA not found, oneDNN) say nothing without a GPU
    quiet = QuietStartup() if not verbose and not gpu_visible() else contextlib.nullcontext()
    with quiet:
        summary = _run(args, verbose)
    _report(summary, args)
    return 0


def _run(args: argparse.Namespace, verbose: bool) -> dict:
    import contextlib

    from tfopt.client.params import check_runner, load_params, read_params_file
    from tfopt.client.warm import WarmStart, enabled

    runner = args.runner or (read_params_file(args.params) if args.params else {}).get("runner")
    runner = check_runner(runner or "subprocess", "--runner")
    # The warm parent's imports (~6 s) overlap the parameter checks' (~5 s) on the other core.
    early = enabled(not args.cold) and runner == "subprocess"
    warm = WarmStart.for_run(args.output_dir) if early else None
    with warm or contextlib.nullcontext():
        params = load_params(args.params, args.pipeline, parse_set(args.set), local=True)
        return run_local(
            params,
            args.output_dir,
            args.pipeline,
            args.cache,
            verbose=verbose,
            warm=warm or False,
            runner=runner,
            parallelism=args.parallelism,
        )


def _report(summary: dict, args: argparse.Namespace) -> None:
    from tfopt.client.results import target_note, target_reasons
    from tfopt.reporting.summary import format_table

    print()
    for line in target_note(summary):
        print(line)
    print(format_table(summary, said_above=target_reasons(summary)))
    verdict = (
        f"selected: {summary.get('selected')}  blessed: {summary.get('blessed')}"
        if "selected" in summary
        else ""
    )
    if args.cache:
        cached = summary.get("cached_steps") or []
        print(f"\nreused from cache: {', '.join(cached) if cached else 'none'}")
    print(f"\n{verdict}")
    serving = summary.get("serving")
    if serving:
        print(
            f"deployed: {serving['model_name']} version {serving['version']} to "
            f"{serving['model_base_path']} (smoke test {serving['smoke_test']}); serve it with "
            f"tfopt serve --model-base-path {serving['model_base_path']} "
            f"--model-name {serving['model_name']}"
        )
        back = serving.get("rollback_version")
        print(f"rollback target: {'version ' + str(back) if back else 'none (first verified)'}")
    elif summary.get("blessed") is False:
        floor = summary.get("quality_floor") or {}
        if floor.get("baseline_passes") is False:
            print(f"not deployed: {summary.get('selection_reason')}")
        else:
            print("not deployed: no candidate met the selection policy (see rejected reasons)")
    print(
        f"summary: {os.path.join(os.path.abspath(args.output_dir), 'summary.json')}"
        f"  ({summary['wall_seconds']} s)"
    )


def _cmd_params(args: argparse.Namespace) -> int:
    import json
    import textwrap

    from tfopt.client.parameter_docs import parameter_rows, parameters_markdown, split_group

    if args.techniques:
        from tfopt.client.technique_docs import techniques_markdown

        print(techniques_markdown())
        return 0
    if args.markdown:
        print(parameters_markdown(args.pipeline))
        return 0
    from tfopt.client import presets

    rows = parameter_rows(args.pipeline)
    preset = presets.get(args.preset, "--preset") if args.preset else None
    for r in rows:  # the preset's values are the defaults it gives a run
        if preset and r["name"] in preset.params:
            r["default"] = r["cluster_default"] = preset.params[r["name"]]
            r["preset"] = args.preset
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if preset:
        print(textwrap.fill(f"preset {args.preset}: {preset.description}", 96))
    width = max(len(r["name"]) for r in rows)
    group = None
    for r in rows:
        if r["group"] != group:
            group = r["group"]
            print(f"\n[{group}]")
            print(f"{'parameter':<{width}}  {'type':<7}  {'default':<16}  allowed")
        default = json.dumps(r["default"]) + (f" (preset {r['preset']})" if "preset" in r else "")
        if r["cluster_default"] != r["default"]:
            default += f" (compiled: {json.dumps(r['cluster_default'])})"
        print(f"{r['name']:<{width}}  {r['type']:<7}  {default:<16}  {r['allowed']}")
        meaning = split_group(r["description"])[1]
        print(textwrap.indent(textwrap.fill(meaning, 96 - width), " " * (width + 2)))
    print(
        "\n(allowed values hold with the other parameters at their defaults; 'compiled': the "
        "default of the compiled pipeline, which runs on a cluster)"
    )
    if not preset:
        named = ", ".join(sorted(presets.PRESETS))
        print(f"presets ({presets.KEY}: NAME in a params file, or --set {presets.KEY}=NAME): "
              f"{named}; `tfopt params --preset NAME` shows what one sets")  # fmt: skip
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from tfopt.pipelines.compile import PIPELINES, compile_all, compile_components, compile_targets

    if args.components:
        for path in compile_components(args.components):
            print(path)
        if not args.output_dir:
            return 0
    if not args.output_dir:
        raise ConfigError("tfopt compile: give --output-dir DIR (pipelines) or --components DIR")
    fanout = {"search_fanout": args.search_fanout, "search_parallelism": args.search_parallelism}
    if args.pipeline:
        paths = compile_targets(args.pipeline, args.output_dir, **fanout)
    else:
        paths = compile_all(args.output_dir, **fanout)
    for path in paths:
        print(path)
    log.debug("pipelines: %s", ", ".join(PIPELINES))
    return 0


def add_search_fanout_args(parser: argparse.ArgumentParser, off=None) -> None:
    """``--search-fanout`` and ``--search-parallelism``: how the optimize pipeline is compiled.
    ``off`` is their default (``compile``: False; submit / schedule / publish: None, so that
    the params file's ``submit:`` section decides when no flag is given)."""
    parser.add_argument(
        "--search-fanout",
        action="store_true",
        default=off,
        help="run each technique's search trials (search: true) as parallel tasks "
        "(dsl.ParallelFor) instead of a bisection inside its one step; a local run always "
        "bisects",
    )
    parser.add_argument(
        "--search-parallelism",
        type=int,
        default=0 if off is False else off,
        metavar="N",
        help="with --search-fanout: at most N trials of one search at a time (default 0: no limit)",
    )


def register(sub) -> None:
    run = sub.add_parser(
        "run",
        help="run a pipeline on this machine (KFP local runner)",
        description="Run a pipeline end to end with KFP's local "
        "SubprocessRunner and print the comparison table. Every parameter is checked "
        "before any step runs.",
        epilog="Pipeline parameters (--params file keys, --set NAME=VALUE): "
        "`tfopt params` lists each with its type, default and allowed values.",
    )
    run.add_argument("--params", help="YAML/JSON file of pipeline parameters")
    run.add_argument(
        "--set", action="append", metavar="NAME=VALUE", help="override one parameter (repeatable)"
    )
    run.add_argument(
        "--output-dir",
        default="tfopt-run",
        help="where artifacts and summary.json go (default: tfopt-run)",
    )
    run.add_argument("--pipeline", default="optimize", help="pipeline name (default: optimize)")
    run.add_argument(
        "--cache", action="store_true", help="reuse outputs of steps whose inputs did not change"
    )
    run.add_argument(
        "--runner",
        choices=("subprocess", "docker"),
        help="subprocess (default): each step a process on this machine; docker: each step "
        "in the image the compiled pipeline names (Docker or podman; docs/containers.md). "
        "Also the `runner` key of a params file",
    )
    run.add_argument(
        "--parallelism",
        type=int,
        default=0,
        metavar="N",
        help="steps at the same time (default 0: as many as the cores allow, while each "
        "step can have 1 GiB of the available memory; 1 runs them one at a time)",
    )
    run.add_argument(
        "-v",
        "--verbose",
        dest="stream",
        action="store_true",
        help="stream every step's output (default: one progress line per step; the full "
        "output is in OUTPUT_DIR/logs/<step>.log either way)",
    )
    run.add_argument(
        "--cold",
        action="store_true",
        help="start every step in a fresh Python (default: steps are forked from one parent "
        "that imported TensorFlow once; TFOPT_WARM_START=0 does the same)",
    )
    run.set_defaults(func=_cmd_run)

    par = sub.add_parser(
        "params",
        help="list every pipeline parameter (type, default, allowed values)",
        description="List the parameters of a pipeline with their type, default and "
        "allowed values, as read from the configs that check them.",
    )
    par.add_argument("--pipeline", default="optimize", help="pipeline name (default: optimize)")
    par.add_argument("--json", action="store_true", help="print JSON instead of a table")
    par.add_argument(
        "--markdown", action="store_true", help="print the table of docs/parameters.md"
    )
    par.add_argument(
        "--preset",
        metavar="NAME",
        help="show the defaults with a named parameter set applied (as `preset: NAME` in a "
        "params file or `--set preset=NAME` gives a run)",
    )
    par.add_argument(
        "--techniques",
        action="store_true",
        help="print the compression techniques, their variants and settings (Markdown)",
    )
    par.set_defaults(func=_cmd_params)

    comp = sub.add_parser(
        "compile",
        help="compile pipelines to KFP YAML",
        description="Write <pipeline>.yaml (Kubeflow Pipelines, with the "
        "kfp-kubernetes settings) and <pipeline>.vertex.yaml "
        "(Vertex AI Pipelines) for every pipeline; --components DIR writes one "
        "<component>.yaml per component (docs/components.md).",
    )
    comp.add_argument("--output-dir", help="directory for <pipeline>.yaml files")
    comp.add_argument(
        "--components",
        metavar="DIR",
        help="also (or only) write every component to DIR/<component>.yaml, loadable with "
        "kfp.components.load_component_from_file",
    )
    comp.add_argument("--pipeline", help="compile only this pipeline")
    add_search_fanout_args(comp, off=False)
    comp.set_defaults(func=_cmd_compile)
