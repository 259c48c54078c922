"""SIGKILL library steps at several points of their work, then re-run them.

Each step runs in a subprocess that is killed mid-work, and the test checks the kill
landed there: ingest once its staging directory exists, once it began its first shard
and once it began half of them (mid-write: the staging directory is left, nothing is
visible); the TFLite conversion after delays drawn across its measured duration
(before it finished); the repository push after such a delay and once its staged
version directory exists (mid-write). A kill that came too late is tried again,
sooner. After every kill no half-written artifact is visible where a reader looks
(the output is absent or complete and equal to an uninterrupted run); temporary
siblings may remain, are ignored by readers and are removed by the re-run, whose
output equals the uninterrupted run's.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from tfopt import fsutil
from tfopt.compression import tflite as tflite_lib
from tfopt.data import ingest as ingest_lib
from tfopt.deploy.serving import repository
from tfopt.training import models

from helpers.waiting import wait_until

INGEST = dict(
    source="builtin:synthetic", synthetic_examples=400_000, synthetic_shape=(16,), shard_size=20_000
)
STEP = """
    import sys
    import numpy as np
    from tfopt.data import ingest as ingest_lib, schema
    from tfopt.compression import tflite as tflite_lib
    from tfopt._keras import tf
    from tfopt.deploy.serving import repository
    tf.io.gfile.exists("/")  # finish TensorFlow's lazy start before the clock starts
    step, out, *rest = sys.argv[1:]
    print("start", flush=True)
    if step == "ingest":
        ingest_lib.ingest(out, ingest_lib.IngestConfig(**INGEST))
    elif step == "convert":
        tflite_lib.convert_to_tflite(rest[0], None, out, tflite_lib.TFLiteConfig(mode="float32"))
    else:
        repository.push_model(rest[0], out, "digits", warmup_examples=np.load(rest[1]))
    print("done", flush=True)
    """.replace("INGEST", repr(INGEST))
SHARDS = 20  # INGEST: 400,000 examples in shards of 20,000
# ingest's kill points: its staging directory made, its first shard begun, half begun
INGEST_KILLS = (0, 1, SHARDS // 2)
TRIES = 3  # a kill that landed after the end (or the write) is tried again, sooner
FIGURES = {"kills": 0, "killed_mid_work": 0, "late_retried": 0, "recovered": 0}


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash_ref")
    out = {}
    t0 = time.perf_counter()
    out["ingest_hash"] = ingest_lib.ingest(
        str(root / "ds"), ingest_lib.IngestConfig(**INGEST)
    ).content_sha256
    out["ingest_s"] = time.perf_counter() - t0
    m = models.build_model(models.ModelConfig(arch="mlp", width=256, depth=2), (8, 8, 1), 10)
    out["model"] = models.save_model(m, str(root / "m"))
    t0 = time.perf_counter()
    tflite_lib.convert_to_tflite(
        out["model"], None, str(root / "m.tflite"), tflite_lib.TFLiteConfig(mode="float32")
    )
    out["convert_s"] = time.perf_counter() - t0
    out["tflite"] = (root / "m.tflite").read_bytes()
    x = np.random.default_rng(0).uniform(0, 16, (64, 8, 8, 1)).astype(np.float32)
    out["x"] = str(root / "x.npy")
    np.save(out["x"], x)
    t0 = time.perf_counter()
    out["push"] = repository.push_model(
        out["model"], str(root / "repo"), "digits", warmup_examples=x
    )
    out["push_s"] = time.perf_counter() - t0
    yield out
    print(f"\ncrash figures: {FIGURES}")


def _kill_during(step: str, out: str, when, *extra: str) -> bool:
    """Run ``step`` in a subprocess, SIGKILL it once ``when(seconds since it started
    working)`` holds (polled while it works).

    Returns True when the kill landed before the step finished.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(STEP), step, out, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "start"
        t0 = time.perf_counter()
        wait_until(
            lambda: proc.poll() is not None or when(time.perf_counter() - t0),
            f"the kill point of {step}",
            timeout_s=600,
            interval_s=0.002,
        )
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
    finally:
        proc.wait(timeout=60)
    FIGURES["kills"] += 1
    mid = "done" not in rest
    FIGURES["killed_mid_work"] += mid
    return mid


def _after(seconds: float):
    return lambda elapsed: elapsed >= seconds


def _staged(parent) -> list[str]:
    """Temporary siblings (staging directories) under ``parent``."""
    try:
        return [str(parent / n) for n in os.listdir(parent) if fsutil.is_temporary(n)]
    except OSError:
        return []


def _staged_shards(parent) -> int:
    """Shards begun in the staging directory under ``parent``; -1 while there is none."""
    begun = [-1]
    for stage in _staged(parent):
        try:
            begun.append(sum(n.endswith(".tfrecord") for n in os.listdir(stage)))
        except OSError:  # renamed into place meanwhile
            continue
    return max(begun)


def _visible(parent) -> list[str]:
    return sorted(n for n in os.listdir(parent) if not fsutil.is_temporary(n))


def _delays(seconds: float, seed: int, fractions) -> list[float]:
    rng = random.Random(seed)
    return [seconds * f * rng.uniform(0.8, 1.2) for f in fractions]


@pytest.mark.slow
def test_sigkilled_ingest_leaves_nothing_half_written_and_reruns_identically(ref, tmp_path):
    for i, shards in enumerate(INGEST_KILLS):
        parent = tmp_path / f"run{i}"
        parent.mkdir()
        out = str(parent / "ds")
        mid = _kill_during("ingest", out, lambda _s, p=parent, n=shards: _staged_shards(p) >= n)
        # killed mid-write: its staging directory is left as it was, and nothing is visible
        assert mid and _visible(parent) == [], (shards, os.listdir(parent))
        assert _staged_shards(parent) >= shards
        info = ingest_lib.ingest(out, ingest_lib.IngestConfig(**INGEST))
        assert info.content_sha256 == ref["ingest_hash"]
        assert os.listdir(parent) == ["ds"]  # stale temporaries of the killed run removed
        FIGURES["recovered"] += 1


@pytest.mark.slow
def test_sigkilled_tflite_conversion_and_push_leave_nothing_half_written(ref, tmp_path):
    for i, delay in enumerate(_delays(ref["convert_s"], 2, (0.2, 0.5))):
        for attempt in range(TRIES):  # mid-conversion: before it finished
            parent = tmp_path / f"conv{i}-{attempt}"
            parent.mkdir()
            out = str(parent / "m.tflite")
            mid = _kill_during("convert", out, _after(delay / 2**attempt), ref["model"])
            assert _visible(parent) in ([], ["m.tflite"])
            if os.path.exists(out):
                assert (parent / "m.tflite").read_bytes() == ref["tflite"]
            tflite_lib.convert_to_tflite(
                ref["model"], None, out, tflite_lib.TFLiteConfig(mode="float32")
            )
            assert (parent / "m.tflite").read_bytes() == ref["tflite"]
            assert os.listdir(parent) == ["m.tflite"]
            FIGURES["recovered"] += 1
            if mid:
                break
            FIGURES["late_retried"] += 1
        assert mid, f"no kill of the conversion landed mid-work (delay {delay:.2f} s)"

    (delay,) = _delays(ref["push_s"], 3, (0.2,))
    kill_points = {"mid-work": None, "mid-write": "staged"}
    for point, event in kill_points.items():
        for attempt in range(TRIES):
            base = str(tmp_path / f"repo-{point}-{attempt}")
            staging = Path(base) / "digits"
            when = (lambda _s, d=staging: bool(_staged(d))) if event else _after(delay / 2**attempt)
            mid = _kill_during("push", base, when, ref["model"], ref["x"])
            # A reader of the repository (TF Serving, list_versions) sees only complete versions.
            versions = repository.list_versions(base, "digits")
            assert versions in ([], [1])
            if versions:
                path = os.path.join(base, "digits", "1")
                assert repository.content_hash(path) == ref["push"].content_sha256
            landed = mid and (not event or (versions == [] and bool(_staged(staging))))
            # The re-run takes the lock the killed pusher held and yields exactly one version.
            again = repository.push_model(
                ref["model"], base, "digits", warmup_examples=np.load(ref["x"])
            )
            assert again.version == 1 and again.content_sha256 == ref["push"].content_sha256
            assert again.created == (not versions)
            assert os.listdir(os.path.join(base, "digits")) == ["1"]
            FIGURES["recovered"] += 1
            if landed:
                break
            FIGURES["late_retried"] += 1
        # mid-write: the kill left the staged version, and no version was visible
        assert landed, f"no kill of the push landed {point}"
