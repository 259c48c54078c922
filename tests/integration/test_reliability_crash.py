"""SIGKILL library steps at several points of their work, then re-run them.

Each step runs in a subprocess that is killed after a delay drawn across the
step's measured duration. After every kill no half-written artifact is visible
where a reader looks (the output is absent or complete and equal to an
uninterrupted run); temporary siblings may remain, are ignored by readers and
are removed by the re-run, whose output equals the uninterrupted run's.
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tfopt import fsutil
from tfopt.compression import tflite as tflite_lib
from tfopt.data import ingest as ingest_lib
from tfopt.data import schema
from tfopt.deploy.serving import repository
from tfopt.training import models

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
FRACTIONS = (0.1, 0.35, 0.7)
FIGURES = {"kills": 0, "killed_mid_work": 0, "recovered": 0}


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


def _kill_during(step: str, out: str, delay: float, *extra: str) -> bool:
    """Run ``step`` in a subprocess, SIGKILL it ``delay`` s after it starts working.

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
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        rest = proc.stdout.read()
    finally:
        proc.wait(timeout=60)
    FIGURES["kills"] += 1
    mid = "done" not in rest
    FIGURES["killed_mid_work"] += mid
    return mid


def _visible(parent) -> list[str]:
    return sorted(n for n in os.listdir(parent) if not fsutil.is_temporary(n))


def _delays(seconds: float, seed: int, fractions=FRACTIONS) -> list[float]:
    rng = random.Random(seed)
    return [seconds * f * rng.uniform(0.8, 1.2) for f in fractions]


@pytest.mark.slow
def test_sigkilled_ingest_leaves_nothing_half_written_and_reruns_identically(ref, tmp_path):
    for i, delay in enumerate(_delays(ref["ingest_s"], 1)):
        parent = tmp_path / f"run{i}"
        parent.mkdir()
        out = str(parent / "ds")
        _kill_during("ingest", out, delay)
        assert _visible(parent) in ([], ["ds"])
        if os.path.exists(out):  # complete, never partial
            assert schema.load_info(out).content_sha256 == ref["ingest_hash"]
        info = ingest_lib.ingest(out, ingest_lib.IngestConfig(**INGEST))
        assert info.content_sha256 == ref["ingest_hash"]
        assert os.listdir(parent) == ["ds"]  # stale temporaries of the killed run removed
        FIGURES["recovered"] += 1


@pytest.mark.slow
def test_sigkilled_tflite_conversion_and_push_leave_nothing_half_written(ref, tmp_path):
    for i, delay in enumerate(_delays(ref["convert_s"], 2, (0.2, 0.5))):
        parent = tmp_path / f"conv{i}"
        parent.mkdir()
        out = str(parent / "m.tflite")
        _kill_during("convert", out, delay, ref["model"])
        assert _visible(parent) in ([], ["m.tflite"])
        if os.path.exists(out):
            assert (parent / "m.tflite").read_bytes() == ref["tflite"]
        tflite_lib.convert_to_tflite(
            ref["model"], None, out, tflite_lib.TFLiteConfig(mode="float32")
        )
        assert (parent / "m.tflite").read_bytes() == ref["tflite"]
        assert os.listdir(parent) == ["m.tflite"]
        FIGURES["recovered"] += 1

    for i, delay in enumerate(_delays(ref["push_s"], 3, (0.2, 0.5))):
        base = str(tmp_path / f"repo{i}")
        _kill_during("push", base, delay, ref["model"], ref["x"])
        # A reader of the repository (TF Serving, list_versions) sees only complete versions.
        versions = repository.list_versions(base, "digits")
        assert versions in ([], [1])
        if versions:
            path = os.path.join(base, "digits", "1")
            assert repository.content_hash(path) == ref["push"].content_sha256
        # The re-run takes the lock the killed pusher held and yields exactly one version.
        again = repository.push_model(
            ref["model"], base, "digits", warmup_examples=np.load(ref["x"])
        )
        assert again.version == 1 and again.content_sha256 == ref["push"].content_sha256
        assert again.created == (not versions)
        assert os.listdir(os.path.join(base, "digits")) == ["1"]
        FIGURES["recovered"] += 1
