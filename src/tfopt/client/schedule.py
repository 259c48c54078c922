"""Recurring runs: KFP recurring runs and Vertex AI pipeline schedules.

``--cron`` takes a standard five-field expression (minute hour day-of-month
month day-of-week) or a macro (``@hourly``, ``@daily``, ``@weekly``,
``@monthly``, ``@yearly``). It is parsed here, before any API call, and then
written in each target's dialect: KFP's scheduler wants six fields with
seconds first (``0 30 2 * * *``) and runs in the cluster's time zone (UTC);
Vertex AI takes five fields with a ``TZ=`` prefix.

The params file's optional ``schedule:`` section holds the defaults::

    schedule:
      cron: "30 2 * * *"
      name: tfopt-nightly
      time_zone: UTC
      max_concurrency: 1
      catchup: false
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tempfile
import zoneinfo
from collections.abc import Mapping
from typing import Any

from tfopt.checks import check_choice, check_int, check_reachable, check_str
from tfopt.client.submit import (
    Prepared,
    SubmitConfig,
    _api_call,
    kfp_client,
    kfp_pipeline_source,
    load_submit_config,
    prepare,
    read_sections,
    vertex_job,
)
from tfopt.errors import ConfigError

log = logging.getLogger(__name__)

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {
            m: i + 1
            for i, m in enumerate(
                ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
            )
        },
    ),
    (
        "day-of-week",
        0,
        7,
        {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
    ),
)


def _cron_value(text: str, field: str, low: int, high: int, names: dict, expr: str) -> int:
    value = names.get(text.lower())
    if value is None:
        if not text.isdigit():
            raise ConfigError(
                f"cron {expr!r}: {field} value {text!r} is not a number"
                + (f" or a name ({', '.join(names)})" if names else "")
            )
        value = int(text)
    if not low <= value <= high:
        raise ConfigError(f"cron {expr!r}: {field} value {value} is outside [{low}, {high}]")
    return value


def parse_cron(expr: str) -> str:
    """Validate a five-field cron expression (or macro); return it normalised (single spaces).

    Raises:
        ConfigError: naming the field and the value that does not parse.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError("cron expression is empty: expected five fields like '30 2 * * *'")
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise ConfigError(f"cron {expr!r}: unknown macro; expected one of {', '.join(MACROS)}")
        return MACROS[text.lower()]
    parts = text.split()
    if len(parts) != 5:
        raise ConfigError(
            f"cron {expr!r} has {len(parts)} field(s): expected 5 "
            "(minute hour day-of-month month day-of-week), e.g. '30 2 * * *'"
        )
    for part, (field, low, high, names) in zip(parts, _FIELDS, strict=True):
        for item in part.split(","):
            base, slash, step = item.partition("/")
            if slash and (not step.isdigit() or int(step) < 1 or int(step) > high):
                raise ConfigError(
                    f"cron {expr!r}: {field} step {step!r} must be an integer in [1, {high}]"
                )
            if base == "*":
                continue
            if not base:
                raise ConfigError(f"cron {expr!r}: empty {field} entry in {part!r}")
            start, dash, end = base.partition("-")
            a = _cron_value(start, field, low, high, names, expr)
            if dash:
                b = _cron_value(end, field, low, high, names, expr)
                if b < a:
                    raise ConfigError(f"cron {expr!r}: {field} range {base!r} runs backwards")
            elif slash:
                raise ConfigError(f"cron {expr!r}: {field} step needs '*' or a range, got {item!r}")
    return " ".join(parts)


def kfp_cron(expr: str) -> str:
    """KFP (robfig/cron with seconds): ``"30 2 * * *"`` -> ``"0 30 2 * * *"``."""
    return "0 " + parse_cron(expr)


def vertex_cron(expr: str, time_zone: str = "UTC") -> str:
    """Vertex AI: ``"30 2 * * *"`` -> ``"TZ=UTC 30 2 * * *"``."""
    return f"TZ={time_zone} {parse_cron(expr)}"


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The ``schedule:`` section of a params file (``--cron`` overrides ``cron``)."""

    cron: str = ""
    name: str = "tfopt-schedule"
    time_zone: str = "UTC"
    max_concurrency: int = 1
    catchup: bool = False

    def __post_init__(self):
        owner = "schedule"
        parse_cron(self.cron)
        check_str(owner, "name", self.name)
        check_int(owner, "max_concurrency", self.max_concurrency, 1, 100)
        check_choice(owner, "catchup", self.catchup, (True, False))
        check_str(owner, "time_zone", self.time_zone)
        try:
            zoneinfo.ZoneInfo(self.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"schedule.time_zone={self.time_zone!r} is not allowed: expected "
                "an IANA time zone like 'UTC' or 'Europe/Berlin'"
            ) from None


def load_schedule_config(path: str | None, **overrides) -> ScheduleConfig:
    """``ScheduleConfig`` from the params file's ``schedule:`` section plus overrides."""
    _, section = read_sections(path) if path else ({}, {})
    values = {**section, **{k: v for k, v in overrides.items() if v is not None}}
    names = {f.name for f in dataclasses.fields(ScheduleConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(
            f"{path}: schedule: unknown key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(names))}"
        )
    if not values.get("cron"):
        raise ConfigError("no cron expression: pass --cron '30 2 * * *' or set schedule.cron")
    return ScheduleConfig(**values)


@dataclasses.dataclass
class ScheduleInfo:
    """One schedule as the target reports it."""

    id: str
    name: str
    cron: str
    state: str = ""


def _check_for_target(config: SubmitConfig, sched: ScheduleConfig) -> None:
    if config.target == "kfp" and sched.time_zone != "UTC":
        raise ConfigError(
            f"schedule.time_zone={sched.time_zone!r}: KFP recurring runs use the "
            "cluster's clock (UTC); write the cron in UTC and set time_zone: UTC"
        )


def create_prepared(prep: Prepared, sched: ScheduleConfig, credentials=None) -> ScheduleInfo:
    """Create the recurring run / pipeline schedule for a prepared submission."""
    cfg = prep.config
    _check_for_target(cfg, sched)
    if cfg.target == "kfp":
        client = kfp_client(cfg)
        experiment = _api_call(
            "KFP create experiment",
            client.create_experiment,
            name=cfg.experiment,
            namespace=cfg.namespace or None,
        )
        cron = kfp_cron(sched.cron)
        rr = _api_call(
            "KFP create recurring run",
            client.create_recurring_run,
            experiment_id=experiment.experiment_id,
            job_name=sched.name,
            description=f"tfopt {cfg.pipeline}: {sched.cron} (UTC)",
            cron_expression=cron,
            max_concurrency=sched.max_concurrency,
            no_catchup=not sched.catchup,
            params=prep.params,
            **kfp_pipeline_source(client, prep),
            pipeline_root=cfg.pipeline_root or None,
            enable_caching=cfg.enable_caching,
            service_account=cfg.service_account or None,
        )
        log.info(
            "created KFP recurring run %s (%s, cron %s)", rr.recurring_run_id, sched.name, cron
        )
        return ScheduleInfo(rr.recurring_run_id, sched.name, cron, str(rr.status or ""))
    from google.cloud import aiplatform

    target = cfg.vertex_target()
    check_reachable(target.host, "the Vertex AI API")
    job = vertex_job(prep, credentials)
    schedule = aiplatform.PipelineJobSchedule(
        pipeline_job=job, display_name=sched.name, credentials=credentials
    )
    cron = vertex_cron(sched.cron, sched.time_zone)
    _api_call(
        "Vertex AI create schedule",
        schedule.create,
        cron=cron,
        max_concurrent_run_count=sched.max_concurrency,
        service_account=cfg.vertex_service_account() or None,
        network=cfg.network or None,
    )
    log.info(
        "created Vertex AI schedule %s (%s, cron %s)", schedule.resource_name, sched.name, cron
    )
    state = schedule.state.name if schedule.state is not None else ""
    return ScheduleInfo(schedule.resource_name, sched.name, cron, state)


def create_schedule(
    params_path: str | None,
    cron: str | None = None,
    set_params: Mapping[str, Any] | None = None,
    credentials=None,
    schedule_overrides: Mapping[str, Any] | None = None,
    **overrides,
) -> ScheduleInfo:
    """Validate everything (cron first), compile, then create the schedule."""
    sched = load_schedule_config(params_path, cron=cron, **dict(schedule_overrides or {}))
    config = load_submit_config(params_path, **overrides)
    _check_for_target(config, sched)
    with tempfile.TemporaryDirectory(prefix="tfopt-schedule-") as tmp:
        prep = prepare(config, params_path, set_params, tmp)
        return create_prepared(prep, sched, credentials)


def list_schedules(config: SubmitConfig, credentials=None) -> list[ScheduleInfo]:
    """Schedules on the target (KFP: recurring runs of the experiment's namespace)."""
    config.check_target()
    if config.target == "kfp":
        client = kfp_client(config)
        out, token = [], ""
        while True:
            resp = _api_call(
                "KFP list recurring runs",
                client.list_recurring_runs,
                page_token=token,
                page_size=100,
                namespace=config.namespace or None,
            )
            for rr in resp.recurring_runs or []:
                cron = (
                    rr.trigger.cron_schedule.cron if rr.trigger and rr.trigger.cron_schedule else ""
                )
                out.append(
                    ScheduleInfo(rr.recurring_run_id, rr.display_name, cron, str(rr.status or ""))
                )
            token = resp.next_page_token or ""
            if not token:
                return out
    from google.cloud import aiplatform

    target = config.vertex_target()
    check_reachable(target.host, "the Vertex AI API")
    aiplatform.init(
        project=target.project,
        location=target.region,
        credentials=credentials,
        api_endpoint=target.api_endpoint or None,
    )
    found = _api_call(
        "Vertex AI list schedules",
        aiplatform.PipelineJobSchedule.list,
        project=target.project,
        location=target.region,
        credentials=credentials,
    )
    return [ScheduleInfo(s.resource_name, s.display_name, s.cron, s.state.name) for s in found]


def delete_schedule(config: SubmitConfig, schedule_id: str, credentials=None) -> None:
    """Delete one schedule by id (KFP recurring-run id; Vertex id or resource name)."""
    config.check_target()
    check_str("schedule", "id", schedule_id)
    if config.target == "kfp":
        client = kfp_client(config)
        _api_call(
            "KFP delete recurring run", client.delete_recurring_run, recurring_run_id=schedule_id
        )
        log.info("deleted KFP recurring run %s", schedule_id)
        return
    from google.cloud import aiplatform

    target = config.vertex_target()
    if not re.match(r"^(projects/[^/]+/locations/[^/]+/schedules/)?[0-9A-Za-z_-]+$", schedule_id):
        raise ConfigError(
            f"schedule id {schedule_id!r}: expected a Vertex schedule id or resource name"
        )
    check_reachable(target.host, "the Vertex AI API")
    aiplatform.init(
        project=target.project,
        location=target.region,
        credentials=credentials,
        api_endpoint=target.api_endpoint or None,
    )
    schedule = _api_call(
        "Vertex AI get schedule",
        aiplatform.PipelineJobSchedule.get,
        schedule_id=schedule_id,
        project=target.project,
        location=target.region,
        credentials=credentials,
    )
    _api_call("Vertex AI delete schedule", schedule.delete)
    log.info("deleted Vertex AI schedule %s", schedule_id)


__all__ = [
    "ScheduleConfig",
    "ScheduleInfo",
    "create_schedule",
    "delete_schedule",
    "kfp_cron",
    "list_schedules",
    "load_submit_config",
    "parse_cron",
    "vertex_cron",
]
