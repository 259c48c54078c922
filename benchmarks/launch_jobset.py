"""JobSet / TrainJob launch figures: submit-to-first-step against the Kubernetes stand-in,
and the step time of two workers started from JobSet env vars against one worker.

    .venv/bin/python benchmarks/launch_jobset.py [--epochs 5] [--repeats 10]

*Submit to first step*: from calling ``tfopt.launch.k8s.launch`` until the
launcher prints the first worker log line (``... step 10``), with the stand-in's
controller creating the pods at once (no queueing, no image pull): what tfopt's
own launch path costs (create, watch event, pod list, log read), median of
``--repeats`` runs, for TrainJob and JobSet. *Step time*: global batch 256
(1 x 256 or 2 x 128) on builtin:digits, CNN width 16, chief's steady-state
examples/s turned into seconds per step; the two workers derive ``TF_CONFIG``
from JobSet variables (as in ``tests/integration/test_multiworker_jobset.py``)
and share this machine's cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]
from k8s_standin_server import K8sStandIn  # noqa: E402
from test_multiworker_jobset import ENTRY, jobset_envs  # noqa: E402

from helpers import multiworker as mw  # noqa: E402


class _FirstStep(io.TextIOBase):
    def __init__(self):
        self.at = None

    def write(self, text):
        if self.at is None and "step" in text:
            self.at = time.perf_counter()
        return len(text)


def submit_to_first_step(kind: str, repeats: int) -> float:
    from tfopt.launch import jobset, k8s, trainjob, validate

    server = K8sStandIn(run_s=1.0, admit_s=0).start()
    times = []
    try:
        for i in range(repeats):
            config = jobset.ClusterJobConfig(
                name=f"bench-{kind}-{i}",
                image="img",
                command=("python",),
                request=validate.TrainingRequest(kind, 2, 0),
            )
            if kind == "trainjob":
                res, body = trainjob.TRAINJOB_RESOURCE, trainjob.build_trainjob(config)
            else:
                res, body = jobset.JOBSET_RESOURCE, jobset.build_jobset(config)
            out = _FirstStep()
            start = time.perf_counter()
            with contextlib.redirect_stdout(out):
                k8s.launch(res, body, 60, api=server.api_client(), poll_s=5)
            times.append(out.at - start)
    finally:
        server.stop()
    return statistics.median(times)


def step_time(n: int, dataset: str, workdir: Path, epochs: int) -> float:
    workdir.mkdir()
    (workdir / "tmp").mkdir()
    config = {
        "model": {"arch": "cnn", "width": 16},
        "epochs": epochs,
        "batch_size": 256 // n,
        "early_stopping_patience": 0,
        "learning_rate": 0.01,
    }
    envs = jobset_envs(n) if n > 1 else [{}]
    procs = [
        mw.start_worker(
            dataset,
            str(workdir / "model"),
            config,
            workdir / f"pod-{i}.log",
            result=str(workdir / "result.json"),
            tmpdir=str(workdir / "tmp"),
            extra_env=env,
            entry=ENTRY if n > 1 else None,
        )
        for i, env in enumerate(envs)
    ]
    if mw.wait_all(procs, 1200) != [0] * n:
        raise SystemExit(f"{n}-worker run failed; see {workdir}")
    result = json.loads((workdir / "result.json").read_text())
    return 256 / result["metrics"]["examples_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    tj = submit_to_first_step("trainjob", args.repeats)
    js = submit_to_first_step("jobset", args.repeats)
    from tfopt.data import ingest

    with tempfile.TemporaryDirectory() as tmp:
        dataset = os.path.join(tmp, "digits")
        ingest.ingest(dataset, ingest.IngestConfig())
        one = step_time(1, dataset, Path(tmp) / "one", args.epochs)
        two = step_time(2, dataset, Path(tmp) / "two", args.epochs)
    print(f"cores: {os.cpu_count()}  load: {os.getloadavg()[0]:.1f}  epochs: {args.epochs}")
    print(f"submit -> first step (stand-in, median of {args.repeats}):")
    print(f"  TrainJob {tj * 1000:.0f} ms   JobSet {js * 1000:.0f} ms")
    print(f"{'workers':>8} {'s/step':>8}")
    print(f"{1:>8} {one:>8.3f}")
    print(f"{'2 (env)':>8} {two:>8.3f}")
    print(f"ratio two/one step time: {two / one:.2f}")


if __name__ == "__main__":
    main()
