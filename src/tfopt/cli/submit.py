"""``tfopt submit`` (one run, ``--wait`` to follow it), ``tfopt schedule [create|list|delete]``
(recurring runs) and ``tfopt publish`` (a pipeline template a console and ``--template``
start runs from)."""

from __future__ import annotations

import argparse
import json
import sys

_TARGET_FLAGS = (
    ("--target", "target", "kfp or vertex (default: the params file's submit.target, else kfp)"),
    ("--host", "host", "KFP API URL (default: submit.host, else $KF_PIPELINES_ENDPOINT)"),
    ("--namespace", "namespace", "KFP namespace (multi-user deployments)"),
    ("--experiment", "experiment", "KFP experiment (default: tfopt)"),
    ("--project", "project", "GCP project (default: submit.project, else $GOOGLE_CLOUD_PROJECT)"),
    ("--region", "region", "Vertex region (default: submit.region, else $GOOGLE_CLOUD_REGION)"),
    ("--pipeline-root", "pipeline_root", "gs:// root for run artifacts (Vertex)"),
    ("--service-account", "service_account", "service account the run uses"),
    ("--network", "network", "VPC network to peer with (Vertex)"),
    (
        "--template",
        "template",
        "start from a published template instead of compiling: KFP NAME[@VERSION], Vertex "
        "https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE/TAG (tfopt publish prints it)",
    ),
    (
        "--repository",
        "repository",
        "Vertex: Artifact Registry KFP repository tfopt publish uploads to (a name, or "
        "https://REGION-kfp.pkg.dev/PROJECT/REPO)",
    ),
)


_COMPILE_FLAGS = ("search_fanout", "search_parallelism")  # cli.pipeline.add_search_fanout_args


def _target_overrides(args: argparse.Namespace) -> dict:
    dests = [dest for _, dest, _ in _TARGET_FLAGS] + list(_COMPILE_FLAGS)
    return {dest: getattr(args, dest, None) for dest in dests}


def _add_common(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--params",
        default=default,
        help="YAML/JSON params file (pipeline parameters + submit:/schedule:)",
    )
    for flag, dest, text in _TARGET_FLAGS:
        parser.add_argument(flag, dest=dest, default=default, help=text)


def _add_compile(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    from tfopt.cli.pipeline import add_search_fanout_args

    add_search_fanout_args(parser, off=argparse.SUPPRESS if suppress else None)


def _add_run_args(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        default=default,
        help="override one pipeline parameter (repeatable)",
    )
    parser.add_argument("--pipeline", default=default, help="pipeline name (default: optimize)")


def _cmd_submit(args: argparse.Namespace) -> int:
    import contextlib

    from tfopt.cli.pipeline import parse_set
    from tfopt.client.submit import submit_file

    say = sys.stderr if args.json else sys.stdout  # --json: stdout holds the JSON alone
    with contextlib.redirect_stdout(say):  # kfp.Client prints its links
        result = submit_file(
            args.params,
            parse_set(args.set),
            pipeline=args.pipeline,
            run_name=args.run_name,
            **_target_overrides(args),
        )
    print(f"submitted {result.target} run {result.run_id} ({result.name})", file=say)
    if result.url:
        print(result.url, file=say)
    if not args.wait:
        if args.json:
            print(json.dumps({k: getattr(result, k) for k in ("target", "run_id", "name", "url")}))
        return 0
    return _wait(result, args, say)


def _wait(result, args: argparse.Namespace, say) -> int:
    """Follow the run to its end; print its tasks, then the summary as a local run does."""
    from tfopt.client import follow

    def on_task(task: follow.Task) -> None:
        took = f" ({task.seconds:.0f} s)" if task.seconds is not None else ""
        why = f": {task.error}" if task.error else ""
        print(f"  {task.name}: {task.state.lower()}{took}{why}", file=say, flush=True)

    outcome = follow.follow(
        result, result.config, poll_s=args.poll, timeout_s=args.timeout or 0, on_task=on_task
    )
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=2))
    else:
        _print_outcome(outcome)
    return outcome.exit_code


def _print_outcome(outcome) -> None:
    from tfopt.client import follow

    print()
    if outcome.summary is not None:
        from tfopt.client.results import target_note, target_reasons
        from tfopt.reporting.summary import format_table

        for line in target_note(outcome.summary):
            print(line)
        print(format_table(outcome.summary, said_above=target_reasons(outcome.summary)))
        print(f"\nselected: {outcome.selected}  blessed: {outcome.blessed}")
        if not outcome.blessed:
            print(f"not blessed: {outcome.summary.get('selection_reason') or 'see the table'}")
    elif outcome.summary_error:
        print(f"summary: {outcome.summary_error}")
    state = outcome.state.replace("_", " ")
    if outcome.failed_task:
        state += f" in task {outcome.failed_task}"
    if outcome.error:
        state += f": {outcome.error}"
    print(f"run {outcome.run_id}: {state} (exit {outcome.exit_code}: "
          f"{follow.EXIT_CODES[outcome.exit_code]})")  # fmt: skip


def _cmd_schedule(args: argparse.Namespace) -> int:
    from tfopt.cli.pipeline import parse_set
    from tfopt.client import schedule

    action = getattr(args, "action", None) or "create"
    params = getattr(args, "params", None)
    overrides = _target_overrides(args)
    if action == "create":
        info = schedule.create_schedule(
            params,
            getattr(args, "cron", None),
            parse_set(getattr(args, "set", None)),
            schedule_overrides={
                "name": getattr(args, "name", None),
                "time_zone": getattr(args, "time_zone", None),
            },
            pipeline=getattr(args, "pipeline", None),
            **overrides,
        )
        print(f"created schedule {info.id} ({info.name}, cron {info.cron!r})")
        return 0
    config = schedule.load_submit_config(params, **overrides)
    if action == "list":
        rows = schedule.list_schedules(config)
        if getattr(args, "json", False):
            print(json.dumps([vars(r) for r in rows], indent=2))
        else:
            for r in rows:
                print(f"{r.id}\t{r.name}\t{r.cron}\t{r.state}")
            if not rows:
                print("(no schedules)")
        return 0
    schedule.delete_schedule(config, args.schedule_id)
    print(f"deleted schedule {args.schedule_id}")
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from tfopt.client import templates
    from tfopt.client.submit import load_submit_config

    overrides = {**_target_overrides(args), "pipeline": args.pipeline}
    config = load_submit_config(args.params, **overrides)
    done = templates.publish(config, tuple(args.tag or ()))
    if args.json:
        print(json.dumps(vars(done), indent=2))
        return 0
    what = "published" if done.created else "unchanged (already published)"
    print(f"{what}: {done.target} {done.name} version {done.version}")
    if done.tags:
        print(f"tags: {', '.join(done.tags)}")
    print(f"start runs from it: --template {done.template}")
    return 0


def _add_create_args(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--cron",
        default=default,
        help="five-field cron, e.g. '30 2 * * *' (or @daily; default: schedule.cron)",
    )
    parser.add_argument("--name", default=default, help="schedule display name")
    parser.add_argument(
        "--time-zone",
        dest="time_zone",
        default=default,
        help="IANA time zone of the cron (Vertex; KFP runs in UTC)",
    )
    _add_run_args(parser, suppress)


def register(sub) -> None:
    sp = sub.add_parser(
        "submit",
        help="submit a pipeline run to KFP or Vertex AI Pipelines",
        description="Compile the pipeline and create one run on a Kubeflow "
        "Pipelines host or on Vertex AI Pipelines, as the params "
        "file's submit: section (or the flags) say.",
    )
    _add_common(sp)
    _add_run_args(sp)
    _add_compile(sp)
    sp.add_argument("--run-name", dest="run_name", help="run display name")
    sp.add_argument(
        "--wait",
        action="store_true",
        help="follow the run until it ends: a line per finished task, then the comparison "
        "table and the pick from its summary.json; exit 0 blessed, 3 not blessed, 4 failed, "
        "5 cancelled or timed out (docs/submit.md)",
    )
    sp.add_argument(
        "--poll", type=float, default=15.0, metavar="S", help="--wait: seconds between polls"
    )
    sp.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        metavar="S",
        help="--wait: stop waiting after S seconds (exit 5; the run goes on); 0 = no limit",
    )
    sp.add_argument(
        "--json", action="store_true", help="print one JSON result on stdout (progress on stderr)"
    )
    sp.set_defaults(func=_cmd_submit)

    pb = sub.add_parser(
        "publish",
        help="publish the compiled pipeline as a template (KFP pipeline version, or Vertex "
        "Artifact Registry)",
        description="Compile the pipeline for the target and publish it where a console "
        "finds it: on KFP a version of the pipeline named <tfopt version>-<content hash>, on "
        "Vertex AI a package version in an Artifact Registry KFP repository tagged with the "
        "tfopt version, latest and every --tag. The same content published again adds no "
        "version. Prints the --template that submit and schedule start runs from.",
    )
    _add_common(pb)
    _add_compile(pb)
    pb.add_argument("--pipeline", help="pipeline name (default: optimize)")
    pb.add_argument(
        "--tag", action="append", metavar="TAG", help="Vertex: one more tag (repeatable)"
    )
    pb.add_argument("--json", action="store_true", help="print JSON")
    pb.set_defaults(func=_cmd_publish)

    sc = sub.add_parser(
        "schedule",
        help="create, list or delete recurring pipeline runs",
        description="Recurring runs: a KFP recurring run or a Vertex AI "
        "pipeline schedule. Without an action, --cron creates one.",
    )
    _add_common(sc)
    _add_create_args(sc)
    _add_compile(sc)
    actions = sc.add_subparsers(dest="action", metavar="ACTION")
    create = actions.add_parser("create", help="create a schedule (default action)")
    _add_common(create, suppress=True)
    _add_create_args(create, suppress=True)
    _add_compile(create, suppress=True)
    lst = actions.add_parser("list", help="list schedules on the target")
    _add_common(lst, suppress=True)
    lst.add_argument("--json", action="store_true", help="print JSON")
    delete = actions.add_parser("delete", help="delete one schedule by id")
    _add_common(delete, suppress=True)
    delete.add_argument("schedule_id", help="KFP recurring-run id or Vertex schedule id/name")
    sc.set_defaults(func=_cmd_schedule)
