"""Serving benchmark on loopback: throughput and latency of the local TF Serving-API server.

Starts ``tfopt serve`` in a subprocess (so client and server do not share a GIL),
then measures, for gRPC and REST, requests per second and p50 / p99 latency of
batch-1 Predict at concurrency 1, 8 and 32, and the latency the server adds at
concurrency 1 over an in-process call of the same SavedModel signature; the
first request to a freshly loaded version with and without warmup records
against the steady-state p50;
and failed requests while a new version is swapped in under load.

    .venv/bin/python benchmarks/serving.py [--seconds 3]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from tfopt.data import ingest, input_pipeline
from tfopt.deploy.serving import client as clients
from tfopt.deploy.serving import repository
from tfopt.training import models

NAME = "digits"


def _model(path: str) -> str:
    m = models.build_model(models.ModelConfig(arch="mlp", width=32, depth=2), (8, 8, 1), 10)
    return models.save_model(m, path)


def _load(
    api: str, grpc_target: str, rest_url: str, x: np.ndarray, concurrency: int, seconds: float
) -> dict:
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)

    def worker(i: int):
        g = clients.GrpcClient(grpc_target) if api == "grpc" else None
        r = clients.RestClient(rest_url) if api == "rest" else None
        mine = []
        row = x[i % len(x)][None]
        start.wait()
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            try:
                if g:
                    g.predict(NAME, row)
                else:
                    r.predict(NAME, instances=row)
                mine.append(time.perf_counter() - t)
            except Exception:
                with lock:
                    errors[0] += 1
        with lock:
            lat.extend(mine)
        if g:
            g.close()
        if r:
            r.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    ms = np.array(lat) * 1000
    return {
        "api": api,
        "concurrency": concurrency,
        "requests": len(lat),
        "rps": len(lat) / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "errors": errors[0],
    }


def _in_process_p50_ms(path: str, x: np.ndarray, seconds: float) -> float:
    """p50 of calling the SavedModel's serving_default in this process (no server)."""
    from tfopt._keras import tf

    fn = tf.saved_model.load(path).signatures["serving_default"]
    row = tf.constant(x[:1])
    for _ in range(20):
        fn(x=row)
    lat = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        fn(x=row)["probabilities"].numpy()
        lat.append(time.perf_counter() - t)
    return float(np.percentile(np.array(lat) * 1000, 50))


def _wait_version(g: clients.GrpcClient, version: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = g.status(NAME)
        if st.get(version) == "AVAILABLE" and all(
            s == "END" for v, s in st.items() if v != version
        ):
            return
        time.sleep(0.02)
    raise TimeoutError(f"version {version} not swapped in")


def _first_request(g, src: str, base: str, x, warm: bool) -> float:
    pushed = repository.push_model(src, base, NAME, warmup_examples=x if warm else None)
    _wait_version(g, pushed.version)
    t = time.perf_counter()
    p = g.predict(NAME, x[:1])
    assert p.version == pushed.version
    return (time.perf_counter() - t) * 1000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each load level")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        info = ingest.ingest(f"{tmp}/ds", ingest.IngestConfig())
        x, _ = input_pipeline.load_arrays(info, "test", limit=32)
        srcs = [_model(f"{tmp}/m{i}") for i in range(4)]
        base = f"{tmp}/repo"
        repository.push_model(srcs[0], base, NAME, warmup_examples=x)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tfopt.cli",
                "serve",
                "--model-base-path",
                base,
                "--model-name",
                NAME,
                "--grpc-port",
                "0",
                "--rest-port",
                "0",
                "--poll-seconds",
                "0.2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            line = proc.stdout.readline()
            fields = dict(f.split("=", 1) for f in line.split()[1:])
            grpc_target, rest_url = fields["grpc"], "http://" + fields["rest"]
            rows = []
            for api in ("grpc", "rest"):
                for c in (1, 8, 32):
                    _load(api, grpc_target, rest_url, x, c, 0.5)  # connection warm-up
                    rows.append(_load(api, grpc_target, rest_url, x, c, args.seconds))
                    print(rows[-1], flush=True)
            in_process = _in_process_p50_ms(srcs[0], x, args.seconds)
            g = clients.GrpcClient(grpc_target)
            steady = next(r["p50_ms"] for r in rows if r["api"] == "grpc" and r["concurrency"] == 1)
            first_warm = _first_request(g, srcs[1], base, x, warm=True)
            first_cold = _first_request(g, srcs[2], base, x, warm=False)
            # Swap under load: 4 gRPC + 4 REST clients while version 4 replaces version 3.
            results: list[dict] = []
            loaders = [
                threading.Thread(
                    target=lambda a=a: results.append(_load(a, grpc_target, rest_url, x, 4, 3.0))
                )
                for a in ("grpc", "rest")
            ]
            for t in loaders:
                t.start()
            time.sleep(0.5)
            pushed = repository.push_model(srcs[3], base, NAME, warmup_examples=x)
            _wait_version(g, pushed.version)
            for t in loaders:
                t.join()
            g.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print("\n| API | concurrency | requests/s | p50 ms | p99 ms | failed |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['api']} | {r['concurrency']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['errors']} |"
        )
    print(
        f"\nsteady gRPC p50 {steady:.2f} ms; first request after load: with warmup "
        f"{first_warm:.2f} ms ({first_warm / steady:.1f}x), without warmup "
        f"{first_cold:.2f} ms ({first_cold / steady:.1f}x)"
    )
    for api in ("grpc", "rest"):
        p50 = next(r["p50_ms"] for r in rows if r["api"] == api and r["concurrency"] == 1)
        print(
            f"{api} c=1 p50 {p50:.2f} ms vs in-process {in_process:.3f} ms: the server adds "
            f"{p50 - in_process:.2f} ms"
        )
    swap_requests = sum(r["requests"] for r in results)
    swap_failed = sum(r["errors"] for r in results)
    print(
        f"swap under load (4 gRPC + 4 REST clients): {swap_requests} requests, {swap_failed} failed"
    )
    return 1 if swap_failed else 0


if __name__ == "__main__":
    sys.exit(main())
