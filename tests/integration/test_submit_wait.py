"""``tfopt submit --wait`` against the KFP stand-in: one line per finished task, the run's
summary.json read from its pipeline root, and one exit status per outcome.

The stand-in moves the run along as a cluster would (``on_get_run``): running with the
first tasks done, then ended. A succeeded run's ``select`` step leaves its ``summary``
artifact where KFP puts it, under ``<pipeline_root>/<pipeline>/<run id>/``.
"""

from __future__ import annotations

import datetime
import json
import os

import kfp_server_api
import pytest
import yaml
from kfp_standin_server import KfpStandIn

from tfopt import cli
from tfopt.client import follow
from tfopt.pipelines.compile import compile_pipeline

# A guard against hangs, not a speed check: the first test pays the cold imports.
pytestmark = pytest.mark.timeout(600)
T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


def summary(blessed: bool) -> dict:
    def variant(name, fmt, acc, size, reasons=()):
        return {
            "name": name, "format": fmt, "accuracy": acc, "f1": acc, "size_bytes": size,
            "gzip_bytes": size // 2, "latency_ms_p50": 0.2, "latency_ms_p99": 0.4,
            "throughput_per_s": 900.0, "rejected_reasons": list(reasons),
        }  # fmt: skip

    return {
        "pipeline": "tfopt-optimize",
        "baseline": "baseline",
        "selected": "tflite_int8" if blessed else None,
        "blessed": blessed,
        "selection_reason": "smallest acceptable" if blessed else "no candidate met the policy",
        "variants": [
            variant("baseline", "saved_model", 0.95, 80_000),
            variant("tflite_int8", "tflite", 0.94, 9_000, () if blessed else ["too slow"]),
        ],
    }


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("pkg") / "optimize.yaml")
    return compile_pipeline("optimize", path)


@pytest.fixture
def kfp_api(monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    server = KfpStandIn()
    yield server
    server.stop()


def _params(tmp_path, host: str, package: str) -> str:
    root = tmp_path / "root"
    doc = {
        "epochs": 2,
        "submit": {"target": "kfp", "host": host, "package": package, "pipeline_root": str(root)},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _task(name: str, state: str, minute: int, error: str = ""):
    return kfp_server_api.V2beta1PipelineTaskDetail(
        display_name=name,
        state=state,
        start_time=T0 + datetime.timedelta(minutes=minute),
        end_time=T0 + datetime.timedelta(minutes=minute, seconds=30),
        error=kfp_server_api.GoogleRpcStatus(message=error) if error else None,
    )


def _script(root: str, final: str, blessed: bool = True, failed_task: str = ""):
    """The run as a cluster reports it: read 1 running (ingest done), read 2 ended."""

    def on_get_run(run, reads):
        done = [_task("ingest", "SUCCEEDED", 0)]
        if reads == 1:
            run.state = "RUNNING"
        elif final == "FAILED":
            run.state = "FAILED"
            done.append(_task(failed_task, "FAILED", 1, error="OOMKilled: memory limit 16Gi"))
        else:
            run.state = final
            done += [_task("train", "SUCCEEDED", 1), _task("select", "SUCCEEDED", 5)]
            if final == "SUCCEEDED":  # where KFP writes the select step's summary artifact
                out = os.path.join(root, "tfopt-optimize", run.run_id, "select", "17")
                os.makedirs(out, exist_ok=True)
                with open(os.path.join(out, "summary"), "w") as fh:
                    json.dump(summary(blessed), fh)
        run.run_details = kfp_server_api.V2beta1RunDetails(task_details=done)

    return on_get_run


def _submit(params: str, *extra: str) -> int:
    return cli.main(["submit", "--params", params, "--wait", "--poll", "0.01", *extra])


def test_a_blessed_run_prints_its_tasks_the_table_and_the_pick_and_exits_0(
    kfp_api, tmp_path, package, capsys
):
    params = _params(tmp_path, kfp_api.url, package)
    kfp_api.on_get_run = _script(str(tmp_path / "root"), "SUCCEEDED")
    assert _submit(params) == follow.EXIT_BLESSED == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    # one line per finished task, once each, in the order they ended
    assert [ln for ln in lines if ln.startswith("  ") and ": succeeded" in ln] == [
        "  ingest: succeeded (30 s)",
        "  train: succeeded (30 s)",
        "  select: succeeded (30 s)",
    ]
    assert "* tflite_int8" in out  # the comparison table marks the pick
    assert "selected: tflite_int8  blessed: True" in out
    assert "(exit 0: succeeded, blessed)" in out
    (run_id,) = kfp_api.runs
    assert kfp_api.paths().count(f"GET /apis/v2beta1/runs/{run_id}") == 2


def test_a_run_that_blesses_nothing_exits_3(kfp_api, tmp_path, package, capsys):
    params = _params(tmp_path, kfp_api.url, package)
    kfp_api.on_get_run = _script(str(tmp_path / "root"), "SUCCEEDED", blessed=False)
    assert _submit(params) == follow.EXIT_NOT_BLESSED == 3
    out = capsys.readouterr().out
    assert "selected: None  blessed: False" in out
    assert "not blessed: no candidate met the policy" in out


def test_a_failed_run_names_the_failed_task_and_exits_4(kfp_api, tmp_path, package, capsys):
    params = _params(tmp_path, kfp_api.url, package)
    kfp_api.on_get_run = _script(str(tmp_path / "root"), "FAILED", failed_task="train")
    assert _submit(params) == follow.EXIT_FAILED == 4
    out = capsys.readouterr().out
    assert "  train: failed (30 s): OOMKilled: memory limit 16Gi" in out
    assert "failed in task train: OOMKilled" in out


def test_a_cancelled_run_and_a_timeout_exit_5(kfp_api, tmp_path, package, capsys):
    params = _params(tmp_path, kfp_api.url, package)
    kfp_api.on_get_run = _script(str(tmp_path / "root"), "CANCELED")
    assert _submit(params) == follow.EXIT_CANCELLED == 5
    assert "cancelled (exit 5: cancelled or timed out)" in capsys.readouterr().out

    def still_running(run, reads):
        run.state = "RUNNING"

    kfp_api.on_get_run = still_running
    assert _submit(params, "--timeout", "0.2") == 5
    assert "timed out: still RUNNING after 0.2 s" in capsys.readouterr().out


def test_json_prints_one_machine_readable_result(kfp_api, tmp_path, package, capsys):
    params = _params(tmp_path, kfp_api.url, package)
    kfp_api.on_get_run = _script(str(tmp_path / "root"), "SUCCEEDED")
    assert _submit(params, "--json") == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # stdout holds the JSON alone
    (run_id,) = kfp_api.runs
    assert result == {
        "target": "kfp",
        "run_id": run_id,
        "url": f"{kfp_api.url}/#/runs/details/{run_id}",
        "state": "succeeded",
        "exit_code": 0,
        "selected": "tflite_int8",
        "blessed": True,
        "figures": {
            "accuracy": 0.94,
            "f1": 0.94,
            "size_bytes": 9000,
            "gzip_bytes": 4500,
            "latency_ms_p50": 0.2,
            "latency_ms_p99": 0.4,
        },
        "failed_task": None,
        "error": None,
        "summary_error": None,
    }
    assert "  ingest: succeeded" in captured.err  # progress went to stderr


def test_a_pipeline_root_this_machine_cannot_read_says_so(kfp_api, tmp_path, package, capsys):
    params = _params(tmp_path, kfp_api.url, package)
    kfp_api.on_get_run = _script(str(tmp_path / "elsewhere"), "SUCCEEDED")
    assert _submit(params) == follow.EXIT_NOT_BLESSED  # succeeded; nothing says blessed
    assert "no summary.json found under the pipeline root" in capsys.readouterr().out


def test_bad_input_exits_2_and_submits_nothing(kfp_api, tmp_path, package, capsys):
    params = _params(tmp_path, kfp_api.url, package)
    assert _submit(params, "--set", "epochz=3") == 2
    assert "unknown parameter(s) epochz" in capsys.readouterr().err
    assert kfp_api.runs == {}
