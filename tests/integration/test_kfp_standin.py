"""KFP paths end to end: ``tfopt submit`` / ``tfopt schedule`` -> kfp.Client -> local
v2beta1 API."""

from __future__ import annotations

import socket

import pytest
import yaml
from kfp_standin_server import KfpStandIn

from tfopt import cli
from tfopt.client import schedule, submit
from tfopt.deploy.vertex import CloudError
from tfopt.errors import ConfigError

# A guard against hangs, not a speed check: the file's first test pays the cold import of
# TF, kfp and the pipeline compile (53 s with both cores busy; CI's loaded runner more).
pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def kfp_api(monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    server = KfpStandIn()
    yield server
    server.stop()


def _params(tmp_path, host, **submit_extra) -> str:
    doc = {
        "epochs": 2,
        "objective": "fastest",
        "submit": {"target": "kfp", "host": host, "experiment": "tfopt-nightly", **submit_extra},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_cli_submit_creates_experiment_and_run(kfp_api, tmp_path, capsys):
    params = _params(tmp_path, kfp_api.url, enable_caching=False)
    assert cli.main(["submit", "--params", params, "--set", "width=8", "--run-name", "smoke"]) == 0
    assert kfp_api.paths() == [
        "GET /apis/v2beta1/healthz",  # tfopt's reachability check
        "GET /apis/v2beta1/healthz",  # kfp.Client's own
        "GET /apis/v2beta1/experiments",
        "POST /apis/v2beta1/experiments",
        "POST /apis/v2beta1/runs",
    ]
    exp = kfp_api.bodies("POST", "/apis/v2beta1/experiments")[0]
    assert exp.display_name == "tfopt-nightly"
    run = kfp_api.bodies("POST", "/apis/v2beta1/runs")[0]
    assert run.display_name == "smoke"
    assert run.experiment_id in kfp_api.experiments
    assert run.runtime_config.parameters == {"epochs": 2, "objective": "fastest", "width": 8}
    spec = run.pipeline_spec
    assert "kubernetes" in spec["platform_spec"]["platforms"]  # kfp-kubernetes settings go too
    spec = spec["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "tfopt-optimize"
    # enable_caching: false reached every task of the submitted spec.
    tasks = spec["root"]["dag"]["tasks"]
    assert tasks and all(
        t["cachingOptions"].get("enableCache", False) is False for t in tasks.values()
    )
    out = capsys.readouterr().out
    assert f"submitted kfp run {run.run_id}" in out


def test_second_submit_reuses_experiment(kfp_api, tmp_path):
    params = _params(tmp_path, kfp_api.url)
    first = submit.submit_file(params)
    second = submit.submit_file(params)
    assert first.run_id != second.run_id
    assert len(kfp_api.experiments) == 1 and len(kfp_api.runs) == 2


def test_schedule_create_list_delete(kfp_api, tmp_path, capsys):
    params = _params(tmp_path, kfp_api.url)
    assert (
        cli.main(
            ["schedule", "--params", params, "--cron", "30 2 * * 1-5", "--name", "tfopt-weekdays"]
        )
        == 0
    )
    rr = kfp_api.bodies("POST", "/apis/v2beta1/recurringruns")[0]
    assert rr.trigger.cron_schedule.cron == "0 30 2 * * 1-5"  # KFP's six fields, seconds first
    assert rr.display_name == "tfopt-weekdays"
    assert rr.max_concurrency == "1" or rr.max_concurrency == 1
    assert rr.no_catchup is True and rr.mode == "ENABLE"
    assert rr.runtime_config.parameters == {"epochs": 2, "objective": "fastest"}
    rr_spec = rr.pipeline_spec.get("pipeline_spec", rr.pipeline_spec)
    assert rr_spec["pipelineInfo"]["name"] == "tfopt-optimize"
    assert "kubernetes" in rr.pipeline_spec["platform_spec"]["platforms"]
    (rid,) = kfp_api.recurring

    config = submit.load_submit_config(params)
    listed = schedule.list_schedules(config)
    assert [(s.id, s.name, s.cron) for s in listed] == [(rid, "tfopt-weekdays", "0 30 2 * * 1-5")]
    assert cli.main(["schedule", "list", "--params", params]) == 0
    assert rid in capsys.readouterr().out
    assert cli.main(["schedule", "delete", "--params", params, rid]) == 0
    assert kfp_api.recurring == {}
    assert "DELETE /apis/v2beta1/recurringruns/" + rid in kfp_api.paths()


def test_bad_input_creates_nothing(kfp_api, tmp_path, capsys):
    params = _params(tmp_path, kfp_api.url)
    # A cron that does not parse: refused before any call.
    assert cli.main(["schedule", "--params", params, "--cron", "0 25 * * *"]) == 2
    assert "hour value 25 is outside [0, 23]" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="6 field"):
        schedule.create_schedule(params, cron="0 0 2 * * *")
    with pytest.raises(ConfigError, match="KFP recurring runs use the cluster's clock"):
        schedule.create_schedule(
            params, cron="@daily", schedule_overrides={"time_zone": "Asia/Tokyo"}
        )
    # A params file naming unknown parameters.
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"epoch": 3, "submit": {"target": "kfp", "host": kfp_api.url}}))
    assert cli.main(["submit", "--params", str(bad)]) == 2
    assert "unknown parameter(s) epoch" in capsys.readouterr().err
    # Unknown or credential-like submit settings.
    with pytest.raises(ConfigError, match="unknown key"):
        submit.load_submit_config(_params(tmp_path, kfp_api.url, hostname="x"))
    with pytest.raises(ConfigError, match="credentials do not belong"):
        submit.load_submit_config(_params(tmp_path, kfp_api.url, token="abc"))
    assert kfp_api.calls == []
    # An unreachable host: a clear error in well under the client's retry loop. The port
    # stays bound (not listening: connections are refused) so that no other process can
    # take it between picking it and the call, as it could once the socket was closed.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
        with pytest.raises(CloudError, match="cannot reach the KFP API"):
            submit.submit_file(_params(tmp_path, dead))
    # Something that answers HTTP but is not a KFP API.
    with pytest.raises(CloudError, match="does not answer as a KFP v2 API"):
        submit.submit_file(_params(tmp_path, kfp_api.url + "/not-kfp"))
