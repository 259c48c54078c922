"""``tfopt submit`` (one run) and ``tfopt schedule [create|list|delete]`` (recurring runs)."""

from __future__ import annotations

import argparse
import json

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
)


def _target_overrides(args: argparse.Namespace) -> dict:
    return {dest: getattr(args, dest, None) for _, dest, _ in _TARGET_FLAGS}


def _add_common(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--params",
        default=default,
        help="YAML/JSON params file (pipeline parameters + submit:/schedule:)",
    )
    for flag, dest, text in _TARGET_FLAGS:
        parser.add_argument(flag, dest=dest, default=default, help=text)


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
    from tfopt.cli.pipeline import parse_set
    from tfopt.client.submit import submit_file

    result = submit_file(
        args.params,
        parse_set(args.set),
        pipeline=args.pipeline,
        run_name=args.run_name,
        **_target_overrides(args),
    )
    print(f"submitted {result.target} run {result.run_id} ({result.name})")
    if result.url:
        print(result.url)
    return 0


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
    sp.add_argument("--run-name", dest="run_name", help="run display name")
    sp.set_defaults(func=_cmd_submit)

    sc = sub.add_parser(
        "schedule",
        help="create, list or delete recurring pipeline runs",
        description="Recurring runs: a KFP recurring run or a Vertex AI "
        "pipeline schedule. Without an action, --cron creates one.",
    )
    _add_common(sc)
    _add_create_args(sc)
    actions = sc.add_subparsers(dest="action", metavar="ACTION")
    create = actions.add_parser("create", help="create a schedule (default action)")
    _add_common(create, suppress=True)
    _add_create_args(create, suppress=True)
    lst = actions.add_parser("list", help="list schedules on the target")
    _add_common(lst, suppress=True)
    lst.add_argument("--json", action="store_true", help="print JSON")
    delete = actions.add_parser("delete", help="delete one schedule by id")
    _add_common(delete, suppress=True)
    delete.add_argument("schedule_id", help="KFP recurring-run id or Vertex schedule id/name")
    sc.set_defaults(func=_cmd_schedule)
