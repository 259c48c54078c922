"""Real two-process MultiWorkerMirroredStrategy training on loopback (TF_CONFIG).

Each replica is a subprocess running ``python -m tfopt.launch.worker`` (what a
TFJob or Vertex AI replica runs), i.e. ``tfopt.training.train.train_model``.
"""

import json
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import multiworker as mw

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EPOCHS = 6  # kill/resume test
ACC_EPOCHS = 14  # accuracy test: long enough that both runs converge (about 97-99%)
# Same global batch (256) for one worker and for two workers of 128 each, so the
# runs take the same number of steps and should land on the same accuracy.
BASE = {
    "model": {"arch": "cnn", "width": 16, "depth": 2},
    "epochs": EPOCHS,
    "learning_rate": 0.01,
    "early_stopping_patience": 0,
    "seed": 7,
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from tfopt.data import ingest

    out = str(tmp_path_factory.mktemp("mw") / "digits")
    ingest.ingest(out, ingest.IngestConfig(source="builtin:digits"))
    return out


def test_accuracy(model_dir: str, dataset: str) -> float:
    from tfopt.data import input_pipeline, schema
    from tfopt.training import models

    info = schema.load_info(dataset)
    x, y = input_pipeline.load_arrays(info, "test")
    probs = models.load_model(model_dir).predict(x, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == y))


test_accuracy.__test__ = False  # a helper, not a test


def _no_worker_temp_left(workdir: Path) -> bool:
    return not list((workdir / "tmp").glob("tfopt-worker*"))


def test_two_workers_match_single_worker(dataset, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    base = {**BASE, "epochs": ACC_EPOCHS}
    procs = mw.start_cluster(
        1,
        dataset,
        str(one / "model"),
        {**base, "batch_size": 256},
        one,
        result=str(one / "result.json"),
    )
    assert mw.wait_all(procs, 300) == [0], (one / "run-0.log").read_text()[-3000:]

    two = tmp_path / "two"
    two.mkdir()
    backup = str(two / "backup")
    procs = mw.start_cluster(
        2,
        dataset,
        str(two / "model"),
        {**base, "batch_size": 128},
        two,
        backup_dir=backup,
        result=str(two / "result.json"),
    )
    codes = mw.wait_all(procs, 400)
    assert codes == [0, 0], [(two / f"run-{i}.log").read_text()[-3000:] for i in range(2)]

    r1 = json.loads((one / "result.json").read_text())
    r2 = json.loads((two / "result.json").read_text())
    assert (r1["strategy"], r1["replicas"]) == ("_DefaultDistributionStrategy", 1)
    assert (r2["strategy"], r2["replicas"]) == ("CollectiveAllReduceStrategy", 2)
    assert r2["epochs_run"] == ACC_EPOCHS
    acc1, acc2 = (
        test_accuracy(str(one / "model"), dataset),
        test_accuracy(str(two / "model"), dataset),
    )
    assert acc1 > 0.9, acc1
    assert abs(acc1 - acc2) <= 0.01, (acc1, acc2)
    # Only the chief wrote: the model, no backup left, no worker temp dirs left.
    assert (two / "model" / "saved_model.pb").exists()
    assert not Path(backup).exists()
    assert _no_worker_temp_left(two)


def _wait_for(path: Path, pattern: str, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and re.search(pattern, path.read_text()):
            return True
        time.sleep(0.5)
    return False


def test_killed_worker_cluster_resumes_from_backup(dataset, tmp_path):
    backup = str(tmp_path / "backup")
    model = str(tmp_path / "model")
    config = {**BASE, "batch_size": 128}
    procs = mw.start_cluster(2, dataset, model, config, tmp_path, backup_dir=backup, tag="first")
    try:
        # "Epoch 3/" is printed after epoch 2 ended, i.e. after its backup was written.
        assert _wait_for(tmp_path / "first-0.log", rf"Epoch 3/{EPOCHS}", 300), (
            tmp_path / "first-0.log"
        ).read_text()[-3000:]
        procs[1].kill()  # SIGKILL the worker mid-run
        procs[1].wait()
        try:  # the chief cannot go on without its peer; give it a moment, then kill it
            procs[0].wait(timeout=10)
        except Exception:
            procs[0].kill()
            procs[0].wait()
    finally:
        for p in procs:
            p.kill()
    assert not Path(model).exists()  # nothing half-written
    assert Path(backup).exists()

    # Restart the whole cluster with the same backup dir (as the operator would).
    procs = mw.start_cluster(
        2,
        dataset,
        model,
        config,
        tmp_path,
        backup_dir=backup,
        result=str(tmp_path / "result.json"),
        tag="second",
    )
    codes = mw.wait_all(procs, 400)
    log = (tmp_path / "second-0.log").read_text()
    assert codes == [0, 0], log[-3000:]
    first_epoch = int(re.search(rf"Epoch (\d+)/{EPOCHS}", log).group(1))
    assert first_epoch >= 3, "did not resume from the BackupAndRestore checkpoint"
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["epochs_run"] == EPOCHS - (first_epoch - 1)
    assert test_accuracy(model, dataset) > 0.85
    assert not Path(backup).exists()
    assert _no_worker_temp_left(tmp_path)


def test_a_replica_that_lost_its_port_restarts_the_cluster_on_new_ports(dataset, tmp_path):
    (tmp_path / "tmp").mkdir()
    logs = [tmp_path / f"replica-{i}.log" for i in range(2)]
    config = {**BASE, "model": {"arch": "mlp", "width": 8}, "epochs": 1, "batch_size": 128}
    tries, thieves = [], []

    def start(ports):
        tries.append(ports)
        if len(tries) == 1:  # another process takes the chief's port before the chief binds
            thief = socket.socket()
            thief.bind(("0.0.0.0", ports[0]))
            thief.listen()
            thieves.append(thief)
        return [
            mw.start_worker(
                dataset, str(tmp_path / "model"), config, logs[i], c, tmpdir=str(tmp_path / "tmp")
            )
            for i, c in enumerate(mw.tf_configs(2, ports))
        ]

    try:
        procs = mw.start_bound(2, start, logs)
        codes = mw.wait_all(procs, 400)
    finally:
        for thief in thieves:
            thief.close()
    assert len(tries) == 2 and tries[1][0] != tries[0][0], tries
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]
    assert (tmp_path / "model" / "saved_model.pb").exists()
