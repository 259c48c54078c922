"""Identical models are not new versions: the content hash ignores the fingerprint's UUID."""

import os
import subprocess
import sys

import pytest

from tfopt import fsutil
from tfopt.data import ingest, input_pipeline
from tfopt.deploy.serving import repository
from tfopt.training import models

pytestmark = pytest.mark.slow  # two trainings in fresh processes (~30 s on 2 shared cores)

_TRAIN = """
import sys
from tfopt.training import models, train
config = train.TrainConfig(model=models.ModelConfig(arch="mlp", width=8, depth=1), epochs=1, seed=7)
train.train_model(sys.argv[1], sys.argv[2], config)
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two trainings from scratch (separate processes, like two pipeline runs), same seed.

    Within one process TensorFlow numbers traced functions from a global
    counter, so only separate processes give what two runs give.
    """
    root = tmp_path_factory.mktemp("content_hash")
    info = ingest.ingest(str(root / "ds"), ingest.IngestConfig())
    procs = [
        subprocess.Popen([sys.executable, "-c", _TRAIN, info.path, str(root / name)])
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    other = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
    c = models.save_model(other, str(root / "c"))
    x, _ = input_pipeline.load_arrays(info, "test", limit=4)
    return (str(root / "a"), str(root / "b"), c), x


def _read(path, name):
    with open(os.path.join(path, name), "rb") as fh:
        return fh.read()


def test_same_seed_reruns_reuse_the_version_without_any_cache(runs, tmp_path):
    (a, b, c), x = runs
    # the saves differ only in the fingerprint's random UUID ...
    assert _read(a, "saved_model.pb") == _read(b, "saved_model.pb")
    assert _read(a, repository.FINGERPRINT) != _read(b, repository.FINGERPRINT)
    # ... which the content hash leaves out
    assert repository.content_hash(a) == repository.content_hash(b)
    base = str(tmp_path / "repo")
    first = repository.push_model(a, base, "m", warmup_examples=x)
    again = repository.push_model(b, base, "m", warmup_examples=x)
    assert (first.version, first.created) == (1, True)
    assert (again.version, again.created) == (1, False)
    assert repository.list_versions(base, "m") == [1]
    # another model (other weights): a new version
    other = repository.push_model(c, base, "m", warmup_examples=x)
    assert (other.version, other.created) == (2, True)


def test_old_push_records_are_rehashed(runs, tmp_path):
    (a, b, _), x = runs
    base = str(tmp_path / "repo")
    first = repository.push_model(a, base, "m", warmup_examples=x)
    record = os.path.join(first.path, repository.PUSH_RECORD)
    # a version pushed before the scheme existed recorded the hash with the UUID in it
    payload = fsutil.read_json(record)
    payload.pop("hash_scheme")
    payload["content_sha256"] = "0" * 64
    fsutil.write_json(record, payload)
    again = repository.push_model(b, base, "m", warmup_examples=x)
    assert (again.version, again.created) == (1, False)
