"""Whole ``tfopt run``s sharing one output root: concurrency, cache reuse, SIGKILL.

One module fixture drives four runs of the fast configuration in the same
directory (two at once, one killed mid-training, one re-run with --cache);
the tests assert on what they left behind. The killed run trains long enough
(``KILLED_EPOCHS``) that the kill, sent once its train step has backed up an epoch,
lands mid-training; the fixture records what the kill left to show it did.
"""

import glob
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tfopt.deploy.serving import config as sc

from helpers.waiting import wait_until

pytestmark = pytest.mark.slow

TFOPT = os.path.join(os.path.dirname(sys.executable), "tfopt")
FAST = {
    "arch": "mlp",
    "width": 16,
    "depth": 1,
    "epochs": 2,
    "early_stopping_patience": 0,
    "latency_iterations": 10,
    "representative_samples": 20,
    "enable_pruning": "false",
    "enable_distillation": "false",
    "enable_lowrank": "false",
    "enable_qat": "false",
    "enable_tflite_dynamic": "false",
    "enable_tflite_float16": "false",
}


KILLED_EPOCHS = 500  # the killed run's training: far longer than the kill takes to land


def _start(out, log, cache=True, **overrides):
    cmd = [TFOPT, "run", "--output-dir", str(out)] + (["--cache"] if cache else [])
    for k, v in {**FAST, **overrides}.items():
        cmd += ["--set", f"{k}={v}"]
    return subprocess.Popen(
        cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _versions(model_dir) -> list[str]:
    """The version folders (TF Serving ignores the repository's other files)."""
    return sorted(n for n in os.listdir(model_dir) if n.isdigit())


def _run_dirs(out):
    return sorted(os.listdir(out / "artifacts"))


def _train_backups(out) -> list[str]:
    """Checkpoint state files of train steps' BackupAndRestore backups (a finished train
    step removes its backup, so these belong to a train step still running or killed)."""
    return glob.glob(str(out / "artifacts" / "*" / "train" / "*.backup" / "chief" / "checkpoint"))


def _reused(log: str) -> list[str]:
    """The steps a run's last line says came from the cache."""
    (line,) = [x for x in log.splitlines() if x.startswith("reused from cache:")]
    listed = line.removeprefix("reused from cache:").strip()
    return [] if listed == "none" else listed.split(", ")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "root"
    logs = out.parent
    res = {}
    procs = [_start(out, logs / f"p{i}.log") for i in (1, 2)]
    res["concurrent_rc"] = [p.wait(timeout=300) for p in procs]
    res["concurrent_logs"] = [(logs / f"p{i}.log").read_text() for i in (1, 2)]
    res["after_concurrent"] = {
        "runs": _run_dirs(out),
        "summary": json.loads((out / "summary.json").read_text()),
        "versions": _versions(out / "serving" / "tfopt-model"),
    }
    # third run (uncached, so it trains, for long): SIGKILL the whole process group once its
    # train step has backed up an epoch, i.e. inside model.fit
    p3 = _start(out, logs / "p3.log", cache=False, epochs=KILLED_EPOCHS)
    assert _train_backups(out) == []  # the first two runs' train steps removed theirs
    wait_until(
        lambda: p3.poll() is not None or _train_backups(out),
        "the killed run's train step to back up an epoch",
        timeout_s=300,
    )
    if p3.poll() is None:  # (a run that ended first is reported by the tests below)
        os.killpg(p3.pid, signal.SIGKILL)
    p3.wait()
    res["killed_rc"] = p3.returncode
    res["killed_backups"] = _train_backups(out)
    res["after_kill"] = {
        "runs": _run_dirs(out),
        "summary": (out / "summary.json").read_text(),
        "serving": _versions(out / "serving" / "tfopt-model"),
    }
    p4 = _start(out, logs / "p4.log")
    res["rerun_rc"] = p4.wait(timeout=300)
    res["rerun_log"] = (logs / "p4.log").read_text()
    res["out"] = out
    return res


def test_two_concurrent_runs_do_not_interfere(runs):
    assert runs["concurrent_rc"] == [0, 0], runs["concurrent_logs"]
    after = runs["after_concurrent"]
    assert len(after["runs"]) == 2  # one run directory each
    summary = after["summary"]  # complete JSON of one of the two runs
    assert summary["selected"] == "baseline" and summary["blessed"] is True
    run_ids = after["runs"]
    # the two runs train the same model (same seed): identical content is one version
    assert summary["serving"]["version"] == 1
    assert after["versions"] == ["1"]
    for rid in run_ids:  # each run's own artifacts are under its own run directory
        assert os.path.isdir(runs["out"] / "artifacts" / rid / "train")
        assert os.path.isdir(runs["out"] / "artifacts" / rid / "deploy-tf-serving")


def test_models_config_intact(runs):
    serving = runs["out"] / "serving"
    entries = sc.read_model_config(str(serving / sc.MODELS_CONFIG))  # parses: intact
    assert [e.name for e in entries] == ["tfopt-model"]
    (entry,) = entries
    assert os.path.realpath(entry.base_path) == os.path.realpath(serving / "tfopt-model")
    # every run deployed the same content: version 1, labelled stable, the one served
    assert entry.policy == "specific" and entry.versions == (1,)
    assert entry.label_map == {"stable": 1}
    assert entry.aspired([int(v) for v in _versions(serving / "tfopt-model")]) == [1]


def test_sigkill_mid_training_leaves_nothing_visible(runs):
    assert runs["killed_rc"] == -signal.SIGKILL
    # the kill landed mid-training: the train step had backed up at least one epoch of
    # KILLED_EPOCHS (a checkpoint), and had not finished (its backup is left, which a
    # finished step removes, and it wrote no model)
    (checkpoint,) = runs["killed_backups"]
    backup = Path(checkpoint).parents[1]
    assert backup.name.endswith(".backup")
    assert not (backup.parent / backup.name.removesuffix(".backup")).exists()
    after = runs["after_kill"]
    assert len(after["runs"]) == 3  # the killed run's directory exists, never read
    summary = json.loads(after["summary"])  # still the complete summary of a finished run
    assert summary["serving"]["version"] == 1
    assert after["serving"] == ["1"]  # no half-written version


def test_rerun_after_kill_reuses_every_cacheable_step_and_pushes_nothing_new(runs):
    assert runs["rerun_rc"] == 0, runs["rerun_log"][-3000:]
    summary = json.loads((runs["out"] / "summary.json").read_text())
    cached = summary["cached_steps"]
    # Every step up to the compression comes from the cache, skipped variants included
    # (they write a marker file: kfp.local serves an entry only while its files exist).
    assert {"ingest", "tune", "train", "tflite", "prune", "distill"} <= set(cached)
    assert "deploy-tf-serving" not in cached and "select" not in cached
    # The champion is looked up afresh every run (validate-data is never cached) and
    # evaluated with the candidates: a cached evaluation could hold an older champion's
    # figures (issue 34).
    assert "validate-data" not in cached and "evaluate" not in cached
    # The cached model is one already pushed: the deploy finds identical content
    # and keeps its version instead of adding a duplicate.
    assert summary["serving"]["version"] == 1
    assert _versions(runs["out"] / "serving" / "tfopt-model") == ["1"]
    line = [x for x in runs["rerun_log"].splitlines() if x.startswith("reused from cache:")]
    assert line == ["reused from cache: " + ", ".join(cached)]
    # the first runs reported no reuse of the deploy step either
    for log in runs["concurrent_logs"]:
        assert "deploy-tf-serving" not in _reused(log)
