"""Helpers for the loopback multi-worker tests and benchmark (plain functions, no fixtures)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def tf_configs(n: int) -> list[str]:
    """TF_CONFIG for a chief plus n-1 workers on loopback ports (as a TFJob would set)."""
    hosts = [f"127.0.0.1:{p}" for p in free_ports(n)]
    cluster = {"chief": hosts[:1]}
    if n > 1:
        cluster["worker"] = hosts[1:]
    tasks = [("chief", 0)] + [("worker", i) for i in range(n - 1)]
    return [json.dumps({"cluster": cluster, "task": {"type": t, "index": i}}) for t, i in tasks]


def start_worker(
    dataset: str,
    model: str,
    config: dict,
    log_path: Path,
    tf_config: str = "",
    backup_dir: str = "",
    result: str = "",
    tmpdir: str = "",
    extra_env: dict | None = None,
    entry: list[str] | None = None,
) -> subprocess.Popen:
    """Start one replica; ``entry`` replaces ``-m tfopt.launch.worker`` (same arguments)."""
    env = {
        **os.environ,
        "TF_CONFIG": tf_config,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
        "TF_NUM_INTEROP_THREADS": "1",
        "TF_NUM_INTRAOP_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if tmpdir:
        env["TMPDIR"] = tmpdir
    env.update(extra_env or {})
    cmd = [
        sys.executable,
        *(entry or ["-m", "tfopt.launch.worker"]),
        "--dataset",
        dataset,
        "--model",
        model,
        "--config",
        json.dumps(config),
    ]
    if backup_dir:
        cmd += ["--backup-dir", backup_dir]
    if result:
        cmd += ["--result", result]
    log = open(log_path, "w")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def start_cluster(
    n: int,
    dataset: str,
    model: str,
    config: dict,
    workdir: Path,
    backup_dir: str = "",
    result: str = "",
    tag: str = "run",
) -> list[subprocess.Popen]:
    configs = tf_configs(n) if n > 1 else [""]
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    return [
        start_worker(
            dataset, model, config, workdir / f"{tag}-{i}.log", c, backup_dir, result, str(tmp)
        )
        for i, c in enumerate(configs)
    ]


def wait_all(procs: list[subprocess.Popen], timeout: float) -> list[int]:
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=timeout))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
    return codes
