"""Cron expressions and submit/schedule settings are checked locally, before any API call."""

import pytest
import yaml

from tfopt.client import schedule, submit
from tfopt.errors import ConfigError


@pytest.mark.parametrize(
    ("expr", "kfp", "vertex_"),
    [
        ("30 2 * * *", "0 30 2 * * *", "TZ=UTC 30 2 * * *"),
        (
            "*/15  0-6 1,15 jan-mar MON-FRI",
            "0 */15 0-6 1,15 jan-mar MON-FRI",
            "TZ=UTC */15 0-6 1,15 jan-mar MON-FRI",
        ),
        ("@daily", "0 0 0 * * *", "TZ=UTC 0 0 * * *"),
    ],
)
def test_cron_dialects(expr, kfp, vertex_):
    assert schedule.kfp_cron(expr) == kfp
    assert schedule.vertex_cron(expr) == vertex_


@pytest.mark.parametrize(
    ("expr", "match"),
    [
        ("", "empty"),
        ("* * * *", "4 field"),
        ("0 0 0 * * *", "6 field"),
        ("60 * * * *", "minute value 60"),
        ("0 24 * * *", "hour value 24"),
        ("0 0 0 * *", "day-of-month value 0"),
        ("0 0 * 13 *", "month value 13"),
        ("0 0 * * 8", "day-of-week value 8"),
        ("0 0 * foo *", "not a number or a name"),
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "backwards"),
        ("@fortnightly", "unknown macro"),
        ("1,,2 * * * *", "empty minute"),
    ],
)
def test_bad_cron_is_refused(expr, match):
    with pytest.raises(ConfigError, match=match):
        schedule.parse_cron(expr)


def test_schedule_section_and_overrides(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(
        yaml.safe_dump(
            {"schedule": {"cron": "0 4 * * *", "name": "n", "time_zone": "Europe/Paris"}}
        )
    )
    cfg = schedule.load_schedule_config(str(path), cron="0 5 * * *")
    assert (cfg.cron, cfg.name, cfg.time_zone) == ("0 5 * * *", "n", "Europe/Paris")
    with pytest.raises(ConfigError, match="time_zone"):
        schedule.load_schedule_config(str(path), time_zone="Mars/Olympus")
    path.write_text(yaml.safe_dump({"schedule": {"crontab": "x"}}))
    with pytest.raises(ConfigError, match="unknown key.*crontab"):
        schedule.load_schedule_config(str(path), cron="0 5 * * *")
    path.write_text("epochs: 1\n")
    with pytest.raises(ConfigError, match="no cron expression"):
        schedule.load_schedule_config(str(path))


def test_submit_config_checks(tmp_path, monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    with pytest.raises(ConfigError, match="target"):
        submit.SubmitConfig(target="airflow")
    with pytest.raises(ConfigError, match="host"):
        submit.SubmitConfig(host="ml-pipeline:8888")
    with pytest.raises(ConfigError, match="network"):
        submit.SubmitConfig(target="vertex", network="vpc")
    with pytest.raises(ConfigError, match="KFP host is missing"):
        submit.SubmitConfig().check_target()
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", "http://kfp:8888/")
    assert submit.SubmitConfig().kfp_host() == "http://kfp:8888"
    with pytest.raises(ConfigError, match="pipeline_root"):
        submit.SubmitConfig(
            target="vertex", project="my-project", region="us-central1"
        ).check_target()
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"submit": {"target": "vertex", "password": "x"}}))
    with pytest.raises(ConfigError, match="credentials do not belong"):
        submit.load_submit_config(str(path))
    path.write_text(yaml.safe_dump({"submit": ["kfp"]}))
    with pytest.raises(ConfigError, match="must be a mapping"):
        submit.load_submit_config(str(path))
