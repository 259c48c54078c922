"""The scheduled scenario of issue 34, end to end on this machine: four runs in sequence into
one TF Serving repository, as a schedule would start them (tests/helpers/scheduled.py has
the data; the same held-out test examples in every run).

1. clean digits: no champion yet (said), the value thresholds alone: v1 deployed;
2. 30% of the labels shuffled: the data passes validation (class counts unchanged) and a
   model is trained, but it does not beat the champion v1 on this run's test split:
   not blessed, v1 stays stable;
3. the pixel range moved to 0..255: validate-data stops the run naming the feature and
   the distance; nothing is trained, nothing is written to the repository;
4. clean data, twice the examples: blessed against the champion, v2 deployed, v1 is the
   rollback target.
"""

import os

import pytest

from tfopt import registry
from tfopt.client.local import run_local
from tfopt.client.runlog import StepFailedError
from tfopt.compression import techniques  # noqa: F401 - registers every technique
from tfopt.deploy.serving import config as serving_config
from tfopt.deploy.serving import deploy, repository

from helpers.scheduled import write_runs

NAME = "tfopt-model"
# Tiny budgets, no compression (the champion and the data are what is tested): the runs'
# models converge enough for a clean model to beat one trained on shuffled labels.
SCHEDULED = {
    "arch": "cnn",
    "width": 8,
    "depth": 2,
    "epochs": 20,
    "early_stopping_patience": 0,
    "latency_iterations": 20,
    "max_accuracy_drop": 5.0,
    **dict.fromkeys(registry.switches(), False),
}


def _stable(base: str) -> int | None:
    entry = serving_config.find_entry(
        serving_config.read_model_config(deploy.config_path(base)), NAME
    )
    return entry.label_map.get("stable") if entry else None


def _files(base: str) -> dict[str, bytes]:
    out = {}
    for root, _, names in os.walk(base):
        for n in names:
            if n != repository.LOCK_FILE:
                with open(os.path.join(root, n), "rb") as fh:
                    out[os.path.relpath(os.path.join(root, n), base)] = fh.read()
    return out


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a hang guard: four runs on two loaded cores
def test_four_scheduled_runs_guard_production(tmp_path):
    sources = write_runs(str(tmp_path / "data"))
    serving = str(tmp_path / "serving")

    def run(name: str) -> dict:
        params = {**SCHEDULED, "source": sources[name], "serving_base_path": serving}
        return run_local(params, str(tmp_path / name))

    first = run("clean")
    assert first["blessed"] and first["serving"]["version"] == 1 and _stable(serving) == 1
    assert first["champion"]["evaluated"] is False
    assert "holds no version yet (a first run)" in first["champion"]["reason"]
    assert first["data_validation"]["validation"]["status"] == "not_checked"

    shuffled = run("shuffled")
    dv = shuffled["data_validation"]["validation"]
    assert dv["status"] == "passed"  # the schema and the statistics allow it
    assert dv["classes"]["linf"] < 0.01 and dv["features"][0]["js"] < 0.01
    champion = shuffled["champion"]
    assert champion["evaluated"] and champion["version"] == "1"
    (baseline,) = shuffled["variants"]
    assert baseline["accuracy"] < champion["accuracy"]
    assert any("vs the champion (TF Serving version 1)" in r for r in baseline["rejected_reasons"])
    assert not shuffled["blessed"] and shuffled["serving"] is None
    assert (
        "the champion" in shuffled["selection_reason"]
        and "stays deployed" in (shuffled["selection_reason"])
    )
    assert _stable(serving) == 1 and repository.list_versions(serving, NAME) == [1]

    before = _files(serving)
    with pytest.raises(StepFailedError) as stopped:
        run("shifted")
    message = str(stopped.value)
    assert message.startswith("step validate-data failed: DataValidationError: ")
    assert "x[..., 0]: distribution drifted, Jensen-Shannon divergence 0." in message
    assert "range [0, 16] -> [0, 255]" in message and "accept_drift=true" in message
    artifacts = str(tmp_path / "shifted" / "artifacts")
    ran = {d for _, dirs, _ in os.walk(artifacts) for d in dirs}
    assert {"ingest", "validate-data"} <= ran
    assert not ran & {"train", "train-config", "tune", "evaluate"}  # nothing trained
    assert _files(serving) == before  # nothing written to the repository

    more = run("more")
    assert more["data_validation"]["validation"]["status"] == "passed"
    assert more["champion"]["evaluated"] and more["champion"]["version"] == "1"
    (baseline,) = more["variants"]
    assert baseline["accuracy"] >= more["champion"]["accuracy"]
    assert more["blessed"] and more["serving"]["version"] == 2
    assert more["serving"]["rollback_version"] == 1 and _stable(serving) == 2
