"""Helpers for the loopback multi-worker tests and benchmark (plain functions, no fixtures)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from helpers.waiting import wait_until

# What a replica prints when another process took its port between free_ports() and its
# own bind (TensorFlow's gRPC server binds 0.0.0.0:<port> without SO_REUSEPORT, so the
# port cannot be held open and handed over: the cluster starts again on new ports).
BIND_FAILED = "Could not start gRPC server"
START_ATTEMPTS = 5


def free_ports(n: int) -> list[int]:
    """n distinct ports free right now (another process may still take one before a
    replica binds it: :func:`start_bound` starts the replicas again when that happens)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes in LISTEN on ``port`` (any address), from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                found.add(inode)
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fds = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fds)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"{fds}/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself has a socket listening on ``port``."""
    return bool(_listening_inodes(port) & _socket_inodes(pid))


def start_bound(
    n: int, start: Callable[[list[int]], list[subprocess.Popen]], logs: list[Path]
) -> list[subprocess.Popen]:
    """Start n replicas on free ports (``start(ports)``) once each has bound its own port.

    Waits until every replica listens on its port, or one exits. A replica that exits
    because its port was taken in between (:data:`BIND_FAILED` in its log, ``logs[i]``)
    makes the whole cluster start again on new ports; any other exit is left to the
    caller's wait to report.
    """
    if not Path("/proc/net/tcp").exists():  # nothing to check the binds with here
        return start(free_ports(n))
    for _ in range(START_ATTEMPTS):
        ports = free_ports(n)
        procs = start(ports)

        def bound_or_exited(procs=procs, ports=ports) -> str:
            if any(p.poll() is not None for p in procs):
                return "exited"
            if all(listens_on(p.pid, port) for p, port in zip(procs, ports, strict=True)):
                return "bound"
            return ""

        outcome = wait_until(bound_or_exited, f"{n} replicas listening on ports {ports}")
        if outcome == "bound":
            return procs
        lost = [i for i, p in enumerate(procs) if p.poll() is not None and _lost_port(logs[i])]
        if not lost:
            return procs
        for p in procs:
            p.kill()
            p.wait()
    raise AssertionError(
        f"{START_ATTEMPTS} clusters of {n} lost a port to another process before binding it"
    )


def _lost_port(log: Path) -> bool:
    try:
        return BIND_FAILED in log.read_text()
    except OSError:
        return False


def tf_configs(n: int, ports: list[int] | None = None) -> list[str]:
    """TF_CONFIG for a chief plus n-1 workers on loopback ports (as a TFJob would set)."""
    hosts = [f"127.0.0.1:{p}" for p in (ports or free_ports(n))]
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
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    logs = [workdir / f"{tag}-{i}.log" for i in range(n)]

    def start(ports: list[int]) -> list[subprocess.Popen]:
        configs = tf_configs(n, ports) if n > 1 else [""]
        return [
            start_worker(dataset, model, config, logs[i], c, backup_dir, result, str(tmp))
            for i, c in enumerate(configs)
        ]

    return start_bound(n, start, logs) if n > 1 else start([])


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
