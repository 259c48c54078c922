"""SIGKILL the training-like pipeline steps at two points each, then re-run them.

Each step is the component's own body (``python_func``) run in a subprocess on
the built-in digits data, exactly as a KFP task would run it, killed after a
delay drawn across the step's measured duration. The kill at 40% must land
mid-work (before the step finished; one that came too late is tried again sooner);
the one at 85% may land after. After every kill the step's model output is absent
or complete (equal to an uninterrupted run's); the re-run succeeds and its output
equals the uninterrupted run's. TensorFlow ops are made deterministic
(``enable_op_determinism``), as a user would to compare runs.

``train`` is killed mid-training instead, once its backup holds 40% of the
epochs (then at 85% of its duration): it resumes from its ``BackupAndRestore`` backup
instead of starting over (``tfopt.training.resume`` restores the input order too),
runs exactly the epochs the killed run had not backed up, and must still end with the
uninterrupted run's weights; its model has no dropout, whose masks Keras does not
checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tfopt import fsutil
from tfopt.training import models, resume, train

from helpers.waiting import wait_until

pytestmark = pytest.mark.slow

# Run one component body with artifacts given as {"kind", "uri", "metadata"} dicts.
RUNNER = """
import json, sys
from importlib import import_module
from kfp import dsl
from tfopt._keras import tf
tf.config.experimental.enable_op_determinism()
spec = json.loads(sys.argv[1])
techniques = import_module("tfopt.components.compress").COMPONENTS  # generated, one each
component = techniques.get(spec["step"]) or getattr(
    import_module("tfopt.components." + spec["step"]), spec["step"]
)
args = {k: getattr(dsl, v["kind"])(uri=v["uri"], metadata=v.get("metadata", {}))
        if isinstance(v, dict) and "kind" in v else v for k, v in spec["args"].items()}
print("start", flush=True)
component.python_func(**args)
print("done", flush=True)
"""

# enough epochs that training fills most of the step: the kill at 40% must land
# mid-training to exercise the resume path
TRAIN = dict(
    arch="mlp", width=32, depth=1, dropout=0.0, epochs=60, batch_size=32, early_stopping_patience=0
)
# step -> (primary output, extra outputs, parameters). Every technique's component runs
# the one body (components/_compress.py) and saves with models.save_for_dataset (a
# SavedModel: prune) or writes a TFLite file (qat): those two stand for the others.
STEPS = {
    "train": ("model", ("metrics", "tensorboard"), {"train_config": TRAIN}),
    "prune": (
        "compressed_model",
        ("metrics", "tensorboard"),
        dict(target_sparsity=0.6, epochs=3, batch_size=32),
    ),
    "qat": (
        "compressed_model",
        ("metrics", "tensorboard"),
        dict(epochs=2, batch_size=32, representative_samples=50),
    ),
    "evaluate": (
        "evaluations",
        ("metrics",),
        dict(latency_iterations=50, latency_warmup=5, throughput_iterations=5),
    ),
}
KINDS = {
    "model": "Model",
    "compressed_model": "Model",
    "evaluations": "Artifact",
    "metrics": "Metrics",
    "tensorboard": "Artifact",
}
FRACTIONS = (0.4, 0.85)
MID_WORK = 1  # the kill at the first fraction must land before the step finished
TRIES = 3  # a kill that came after the end is tried again, at half the delay
# Measured, not deterministic: left out when evaluations are compared.
TIMED = ("latency", "throughput", "memory", "rss", "seconds")
FIGURES: dict[str, dict[str, int]] = {}


@pytest.fixture(scope="module")
def world(tmp_path_factory, digits_dir):
    root = tmp_path_factory.mktemp("crash_steps")
    base = str(root / "baseline")
    train.train_model(
        digits_dir,
        base,
        train.TrainConfig(
            model=models.ModelConfig(arch="mlp", width=64, depth=1),
            epochs=3,
            early_stopping_patience=0,
        ),
    )
    yield {"root": root, "dataset": digits_dir, "baseline": base}
    print(f"\nstep crash figures: {json.dumps(FIGURES)}")


def _spec(world, step: str, out_dir) -> dict:
    primary, extra, params = STEPS[step]
    args = {
        name: {"kind": KINDS[name], "uri": os.path.join(out_dir, name)}
        for name in (primary, *extra)
    }
    args["dataset"] = {"kind": "Dataset", "uri": world["dataset"]}
    if step != "train":
        base = {
            "kind": "Model",
            "uri": world["baseline"],
            "metadata": {"variant": "baseline", "format": "saved_model"},
        }
        args["baseline" if step == "evaluate" else "model"] = base
    return {"step": step, "args": {**args, **params}}


def _run(spec: dict, kill_when=None) -> tuple[bool, float]:
    """Run a step; with ``kill_when``, SIGKILL it once ``kill_when(seconds since start)``
    holds (polled while it works).

    Returns (finished, seconds from start to end or kill).
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "start", proc.stderr.read()[-3000:]
        t0 = time.perf_counter()
        if kill_when is None:
            rest = proc.stdout.read()
            assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
            return "done" in rest, time.perf_counter() - t0
        wait_until(
            lambda: proc.poll() is not None or kill_when(time.perf_counter() - t0),
            f"the kill point of {spec['step']}",
            timeout_s=600,
            interval_s=0.02,
        )
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
        return "done" in rest, time.perf_counter() - t0
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
        proc.stderr.close()


def _after(seconds: float):
    return lambda elapsed: elapsed >= seconds


def _completed_epochs(backup: str) -> int:
    """Finished epochs in a train step's backup (0 while it has none, or one in between)."""
    try:
        return resume.completed_epochs(backup) if os.path.isdir(backup) else 0
    except Exception:  # a checkpoint the running step is replacing: not there yet
        return 0


def _backed_up(backup: str, epochs: int):
    """Once the running train step's backup holds ``epochs`` finished epochs."""
    return lambda _elapsed: _completed_epochs(backup) >= epochs


def fingerprint(path: str) -> str:
    """What must equal an uninterrupted run: weights, TFLite bytes, or untimed figures."""
    h = hashlib.sha256()
    if os.path.isdir(path):  # SavedModel
        for w in models.load_model(path).get_weights():
            h.update(np.ascontiguousarray(w).tobytes())
    elif path.endswith("evaluations"):
        records = fsutil.read_json(path)["candidates"]
        untimed = [{k: v for k, v in r.items() if not any(t in k for t in TIMED)} for r in records]
        h.update(json.dumps(untimed, sort_keys=True).encode())
    else:
        with open(path, "rb") as fh:
            h.update(fh.read())
    return h.hexdigest()


def _visible(parent: str) -> list[str]:
    return sorted(n for n in os.listdir(parent) if not fsutil.is_temporary(n))


@pytest.mark.parametrize("step", list(STEPS))
def test_sigkilled_step_leaves_nothing_half_written_and_reruns_identically(world, step):
    primary = STEPS[step][0]
    ref_dir = str(world["root"] / f"{step}-ref")
    finished, seconds = _run(_spec(world, step, ref_dir))
    assert finished
    ref = fingerprint(os.path.join(ref_dir, primary))
    figures = FIGURES.setdefault(
        step, {"kills": 0, "mid_work": 0, "late_retried": 0, "recovered": 0, "resumed": 0}
    )
    rng = random.Random(step)
    for i, fraction in enumerate(FRACTIONS):
        delay = seconds * fraction * rng.uniform(0.8, 1.2)
        for attempt in range(TRIES):
            out_dir = str(world["root"] / f"{step}-{i}-{attempt}")
            spec = _spec(world, step, out_dir)
            output = os.path.join(out_dir, primary)
            backup = output + ".backup"
            mid_training = step == "train" and i < MID_WORK
            at_epoch = max(1, round(TRAIN["epochs"] * fraction))
            # train: once 40% of the epochs are backed up; else after the delay
            when = _backed_up(backup, at_epoch) if mid_training else _after(delay / 2**attempt)
            finished, _ = _run(spec, kill_when=when)
            figures["kills"] += 1
            figures["mid_work"] += not finished
            if os.path.exists(output):  # a reader sees the complete output or none
                assert fingerprint(output) == ref, f"{step}: killed at {fraction} left {output}"
            backed_up = _completed_epochs(backup)
            if mid_training:  # the kill landed mid-training: those epochs backed up, not all
                assert not finished and at_epoch <= backed_up < TRAIN["epochs"], backed_up
            assert _run(spec)[0]
            assert primary in _visible(out_dir)
            assert not any(fsutil.is_temporary(n) for n in os.listdir(out_dir))
            assert not os.path.exists(backup)  # train removes its backup when done
            metrics = fsutil.read_json(os.path.join(out_dir, "metrics"))
            if mid_training:  # resumed after the last epoch the killed run backed up
                assert metrics["epochs_run"] == TRAIN["epochs"] - backed_up, metrics
                figures["resumed"] += 1
            assert fingerprint(output) == ref, f"{step}: re-run after a kill at {fraction}"
            figures["recovered"] += 1
            if not finished or i >= MID_WORK:
                break
            figures["late_retried"] += 1  # the step ended before the kill: try sooner
        # the kill at 40% landed mid-work (the one at 85% may land after the end)
        assert i >= MID_WORK or not finished, f"{step}: no kill at {fraction} landed mid-work"
