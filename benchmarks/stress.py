"""Serving under stress: bounded load, version swaps, malformed requests, a broken version.

Starts the local server on 127.0.0.1 (in this process) over a fresh repository
and, for ``--seconds``:

* ``--clients`` threads send REST predict requests back to back (each on its own
  keep-alive connection); ``--malformed`` of them are malformed on purpose
  (bad JSON, wrong types, wrong shapes, unknown keys, missing keys, a huge body);
* a swapper pushes a new version every ``--swap-every`` seconds with the real
  ``repository.push_model``; halfway it writes a version whose variables are
  corrupt (as bit rot or a foreign writer would), which must be reported by
  GetModelStatus with an error, retried ``--load-retries`` times and skipped,
  while the previous version keeps serving.

Figures: requests served, well-formed requests failed (goal 0), malformed
requests answered with a TF Serving-shaped 4xx (goal: all), 5xx / dropped
connections (goal 0), p50/p99 latency in steady state versus during swaps
(from a push until the new version answers, plus 0.25 s).

    .venv/bin/python benchmarks/stress.py [--seconds 20] [--clients 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import tempfile
import threading
import time

import numpy as np

from tfopt import fsutil
from tfopt.data import ingest, input_pipeline
from tfopt.deploy.serving import repository, server
from tfopt.training import models

NAME = "digits"

MALFORMED = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'{"instances": []}',
    b'{"instances": "abc"}',
    b'{"instances": [[1, 2, 3]]}',
    b'{"inputs": {"y": [1]}}',
    b'{"signature_name": 5}',
    b'{"instances": [1], "inputs": [1]}',
    b'{"instances": [["a"]]}',
    b'{"instances": [[[[true]]]]}',
    b'{"instances": [{"x": 1, "z": 2}]}',
    b"\xff\xfe\x00garbage",
    b"[" * 5000 + b"]" * 5000,
    b'{"instances": [[1e999]]}',
]


def _model(path: str, seed: int) -> str:
    from tfopt._keras import tf

    tf.keras.utils.set_random_seed(seed)
    m = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
    return models.save_model(m, path)


def _broken_version(good: str, base: str, version: int) -> str:
    """A version directory whose variables are truncated (written behind push's back)."""
    target = os.path.join(repository.model_dir(base, NAME), str(version))
    with fsutil.atomic_dir(target, overwrite=False) as tmp:
        shutil.copytree(good, tmp, dirs_exist_ok=True)
        data_file = next(
            os.path.join(tmp, "variables", f)
            for f in os.listdir(os.path.join(tmp, "variables"))
            if f.startswith("variables.data")
        )
        with open(data_file, "r+b") as fh:
            fh.truncate(max(1, os.path.getsize(data_file) // 3))
    return target


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def run_stress(
    seconds: float = 20.0,
    clients: int = 4,
    malformed: float = 0.1,
    swap_every: float = 2.0,
    load_retries: int = 2,
    retry_interval: float = 0.5,
    seed: int = 0,
    workdir: str | None = None,
) -> dict:
    """Run the stress scenario; returns the figures (see the module docstring)."""
    own = workdir is None
    root = workdir or tempfile.mkdtemp(prefix="tfopt-stress-")
    try:
        return _run(
            root, seconds, clients, malformed, swap_every, load_retries, retry_interval, seed
        )
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def _run(root, seconds, clients, malformed, swap_every, load_retries, retry_interval, seed):
    info = ingest.ingest(os.path.join(root, "ds"), ingest.IngestConfig())
    x, _ = input_pipeline.load_arrays(info, "test", limit=64)
    n_swaps = max(2, int(seconds / swap_every))
    sources = [_model(os.path.join(root, f"m{i}"), seed + i) for i in range(n_swaps + 1)]
    base = os.path.join(root, "repo")
    repository.push_model(sources[0], base, NAME, warmup_examples=x[:4])
    srv = server.ModelServer(
        base,
        NAME,
        poll_seconds=0.1,
        max_request_bytes=1 << 20,
        max_load_retries=load_retries,
        load_retry_interval_s=retry_interval,
    ).start()
    records: list[tuple[float, float, bool, int]] = []  # start, latency, well_formed, status
    swaps: list[tuple[float, float]] = []
    lock = threading.Lock()
    stop = threading.Event()
    broken = {"version": None, "status": None, "served_during": set()}
    served_versions: set[int] = set()

    def client(i: int) -> None:
        r = random.Random(seed * 1000 + i)
        conn = http.client.HTTPConnection("127.0.0.1", srv.rest_port, timeout=30)
        path = f"/v1/models/{NAME}:predict"
        while not stop.is_set():
            bad = r.random() < malformed
            if bad:
                body = r.choice(MALFORMED + [b'{"instances": [' + b"0," * 600_000 + b"0]}"])
            else:
                k = r.randint(1, 4)
                j = r.randrange(len(x) - k)
                body = json.dumps({"instances": x[j : j + k].tolist()}).encode()
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                payload = resp.read()
                status = resp.status
                if status == 200:
                    doc = json.loads(payload)
                    if len(doc["predictions"]) != k or bad:
                        status = -2  # a wrong answer counts as a failure
                elif status < 500:
                    doc = json.loads(payload)
                    if not isinstance(doc.get("error"), str):
                        status = -3  # not TF Serving's {"error": "..."} shape
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException, ValueError):
                status = -1  # dropped connection / unreadable answer
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", srv.rest_port, timeout=30)
            with lock:
                records.append((t0, time.perf_counter() - t0, not bad, status))
        conn.close()

    def swapper() -> None:
        for i in range(1, n_swaps + 1):
            if stop.wait(swap_every):
                return
            if i == n_swaps // 2 + 1 and broken["version"] is None:
                v = repository.list_versions(base, NAME)[-1] + 1
                t0 = time.perf_counter()
                _broken_version(sources[i], base, v)
                broken["version"] = v
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    model = srv._models[NAME]
                    if model.failed.get(v, ("", 0, 0))[1] > load_retries:
                        break
                    broken["served_during"].add(srv.resolve(NAME).version)
                    time.sleep(0.05)
                broken["served_during"].add(srv.resolve(NAME).version)
                st = srv.model_status(NAME, v).model_version_status[0]
                broken["status"] = {
                    "state": st.state,
                    "error_code": st.status.error_code,
                    "error_message": st.status.error_message,
                    "attempts": srv._models[NAME].failed[v][1],
                }
                swaps.append((t0, time.perf_counter()))
                continue
            t0 = time.perf_counter()
            pushed = repository.push_model(sources[i], base, NAME, warmup_examples=x[:4])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if srv.resolve(NAME).version == pushed.version:
                        break
                except server.ServingError:
                    pass
                time.sleep(0.01)
            swaps.append((t0, time.perf_counter()))
            served_versions.add(pushed.version)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    sw = threading.Thread(target=swapper, daemon=True)
    t_start = time.perf_counter()
    for t in threads:
        t.start()
    sw.start()
    time.sleep(seconds)
    sw.join(timeout=60)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.perf_counter() - t_start
    status_after = srv.model_status(NAME)
    final_version = srv.resolve(NAME).version
    srv.stop()

    def in_swap(t: float) -> bool:
        return any(a <= t <= b + 0.25 for a, b in swaps)

    good = [r for r in records if r[2]]
    bad = [r for r in records if not r[2]]
    ok = [r for r in good if r[3] == 200]
    steady = [r[1] * 1e3 for r in ok if not in_swap(r[0])]
    during = [r[1] * 1e3 for r in ok if in_swap(r[0])]
    return {
        "seconds": round(elapsed, 1),
        "clients": clients,
        "requests": len(records),
        "well_formed": len(good),
        "served": len(ok),
        "well_formed_failed": len(good) - len(ok),
        "malformed": len(bad),
        "malformed_4xx": sum(1 for r in bad if 400 <= r[3] < 500),
        "malformed_5xx_or_dropped": sum(1 for r in bad if not 400 <= r[3] < 500),
        "swaps": len(swaps),
        "final_version": final_version,
        "requests_during_swaps": len(during),
        "p50_ms_steady": round(_percentile(steady, 50), 2),
        "p99_ms_steady": round(_percentile(steady, 99), 2),
        "p50_ms_swapping": round(_percentile(during, 50), 2),
        "p99_ms_swapping": round(_percentile(during, 99), 2),
        "broken_version": broken["version"],
        "broken_status": broken["status"],
        "served_while_broken": sorted(broken["served_during"]),
        "versions_known": {s.version: s.state for s in status_after.model_version_status},
        "rps": round(len(records) / elapsed, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--malformed", type=float, default=0.1)
    p.add_argument("--swap-every", type=float, default=2.0)
    p.add_argument("--load-retries", type=int, default=2)
    args = p.parse_args()
    result = run_stress(
        args.seconds, args.clients, args.malformed, args.swap_every, args.load_retries
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
