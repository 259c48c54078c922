"""Two-process MultiWorkerMirroredStrategy started from a JobSet pod's environment.

Each replica gets only what JobSet (and Trainer v2) give a pod - ``JOBSET_NAME``,
``REPLICATED_JOB_NAME``, ``JOB_INDEX``, ``JOB_COMPLETION_INDEX`` - plus the
launcher's ``TFOPT_PODS_PER_JOB``/``TFOPT_JOBS``/``TFOPT_PORT``, and no
``TF_CONFIG``. ``tfopt.launch.tf_config`` derives it in the child process. On
one machine the pods' DNS names cannot resolve and both would bind the same
port, so a small entry (the cluster DNS stand-in) maps each derived pod name to
a loopback port before handing over to ``tfopt.launch.worker``; a name that
does not follow JobSet's ``<jobset>-<job>-<jobIndex>-<podIndex>.<subdomain>``
scheme has no entry and fails the run.
"""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_multiworker import BASE, test_accuracy

from helpers import multiworker as mw

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

JOBSET = "tfopt-mw"
# Derive TF_CONFIG exactly as the worker does, then resolve pod names via TEST_POD_DNS.
ENTRY = [
    "-c",
    "import json, os, sys\n"
    "from tfopt.launch import tf_config, worker\n"
    "assert tf_config.ensure_tf_config(os.environ) == 'jobset', 'TF_CONFIG not derived'\n"
    "dns = json.loads(os.environ['TEST_POD_DNS'])\n"
    "cfg = json.loads(os.environ['TF_CONFIG'])\n"
    "print('derived TF_CONFIG', json.dumps(cfg, sort_keys=True), flush=True)\n"
    "cfg['cluster'] = {k: [dns[h] for h in v] for k, v in cfg['cluster'].items()}\n"
    "os.environ['TF_CONFIG'] = json.dumps(cfg)\n"
    "sys.exit(worker.main(sys.argv[1:]))\n",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from tfopt.data import ingest

    out = str(tmp_path_factory.mktemp("mwjs") / "digits")
    ingest.ingest(out, ingest.IngestConfig(source="builtin:digits"))
    return out


def jobset_envs(n: int, ports: list[int] | None = None) -> list[dict]:
    ports = ports or mw.free_ports(n)
    dns = {f"{JOBSET}-node-0-{i}.{JOBSET}:2222": f"127.0.0.1:{p}" for i, p in enumerate(ports)}
    common = {
        "JOBSET_NAME": JOBSET,
        "REPLICATED_JOB_NAME": "node",
        "JOB_INDEX": "0",
        "TFOPT_JOBS": "1",
        "TFOPT_PODS_PER_JOB": str(n),
        "TFOPT_PORT": "2222",
        "TEST_POD_DNS": json.dumps(dns),
    }
    return [{**common, "JOB_COMPLETION_INDEX": str(i)} for i in range(n)]


def test_two_workers_from_jobset_env(dataset, tmp_path):
    (tmp_path / "tmp").mkdir()
    config = {**BASE, "epochs": 4, "batch_size": 128}
    logs = [tmp_path / f"pod-{i}.log" for i in range(2)]

    def start(ports):
        return [
            mw.start_worker(
                dataset,
                str(tmp_path / "model"),
                config,
                logs[i],
                backup_dir=str(tmp_path / "backup"),
                result=str(tmp_path / "result.json"),
                tmpdir=str(tmp_path / "tmp"),
                extra_env=env,
                entry=ENTRY,
            )
            for i, env in enumerate(jobset_envs(2, ports))
        ]

    procs = mw.start_bound(2, start, logs)
    codes = mw.wait_all(procs, 400)
    logs = [(tmp_path / f"pod-{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], [log[-3000:] for log in logs]
    derived = [json.loads(log.split("derived TF_CONFIG ", 1)[1].splitlines()[0]) for log in logs]
    hosts = [f"{JOBSET}-node-0-{i}.{JOBSET}:2222" for i in range(2)]
    assert [d["cluster"] for d in derived] == [{"chief": hosts[:1], "worker": hosts[1:]}] * 2
    assert [d["task"] for d in derived] == [
        {"type": "chief", "index": 0},
        {"type": "worker", "index": 0},
    ]
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["strategy"], result["replicas"]) == ("CollectiveAllReduceStrategy", 2)
    assert result["epochs_run"] == 4
    assert test_accuracy(str(tmp_path / "model"), dataset) > 0.85
    assert not (tmp_path / "backup").exists()  # the chief removed its backup on success
