"""The scheduled scenario of issue 34 through ``tfopt schedule`` against the KFP API stand-in:
the recurring run's compiled pipeline resolves the champion and validates the data before
any training, evaluates the champion beside the candidates, and carries the parameters
(tests/local/test_scheduled_runs.py runs the four runs themselves on this machine)."""

from __future__ import annotations

import pytest
import yaml
from kfp_standin_server import KfpStandIn

from tfopt import cli

pytestmark = pytest.mark.timeout(600)  # a hang guard: the cold compile of the pipeline

SCENARIO = {
    "deploy_target": "tf_serving",
    "serving_base_path": "gs://tfopt-prod/serving",
    "model_name": "digits",
    "min_accuracy_change": 0.0,
    "change_mode": "absolute",
    "drift_linf_threshold": 0.1,
    "drift_js_threshold": 0.1,
    "accept_drift": False,
}


@pytest.fixture
def kfp_api(monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    server = KfpStandIn()
    yield server
    server.stop()


def test_a_nightly_schedule_guards_production_with_the_champion(kfp_api, tmp_path):
    params = tmp_path / "nightly.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                **SCENARIO,
                "source": "gs://tfopt-prod/data/digits.npz",
                "submit": {"target": "kfp", "host": kfp_api.url, "experiment": "nightly"},
            }
        )
    )
    assert cli.main(["schedule", "--params", str(params), "--cron", "0 3 * * *"]) == 0
    (rr,) = kfp_api.bodies("POST", "/apis/v2beta1/recurringruns")
    assert rr.trigger.cron_schedule.cron == "0 0 3 * * *"
    sent = rr.runtime_config.parameters
    assert {k: sent[k] for k in SCENARIO} == SCENARIO
    spec = rr.pipeline_spec.get("pipeline_spec", rr.pipeline_spec)
    declared = spec["root"]["inputDefinitions"]["parameters"]
    for name in ("champion_uri", "change_mode", "drift_linf_threshold", "accept_drift"):
        assert declared[name]["description"], name  # the run form explains each
    tasks = spec["root"]["dag"]["tasks"]
    check = tasks["validate-data"]
    assert check["dependentTasks"] == ["ingest"]
    assert not check["cachingOptions"].get("enableCache")  # the champion moves between runs
    wired = check["inputs"]["parameters"]
    for name in ("serving_base_path", "model_name", "champion_uri", "drift_js_threshold"):
        assert wired[name]["componentInputParameter"] == name
    # nothing trains before the data passed: tune and train-config wait for validate-data
    assert "validate-data" in tasks["tune"]["dependentTasks"]
    assert "validate-data" in tasks["train-config"]["dependentTasks"]
    champion = tasks["evaluate"]["inputs"]["artifacts"]["validation"]["taskOutputArtifact"]
    assert champion == {"producerTask": "validate-data", "outputArtifactKey": "validation"}
    assert tasks["select"]["inputs"]["parameters"]["change_mode"] == {
        "componentInputParameter": "change_mode"
    }
