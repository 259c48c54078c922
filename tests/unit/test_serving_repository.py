"""Model repository push: layout, versions, idempotency, atomicity, warmup records."""

import os

import numpy as np
import pytest

from tfopt.data import input_pipeline, schema
from tfopt.deploy.serving import repository, warmup
from tfopt.errors import DataError, ModelError
from tfopt.training import models


@pytest.fixture(scope="module")
def assets(tmp_path_factory, digits_dir):
    root = tmp_path_factory.mktemp("serving_repo")
    info = schema.load_info(digits_dir)
    x, _ = input_pipeline.load_arrays(info, "test", limit=8)
    paths = []
    for i in range(2):
        m = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
        paths.append(models.save_model(m, str(root / f"m{i}")))
    return {"x": x, "models": paths, "dataset": digits_dir}


def _entries(path):
    return sorted(os.listdir(path))


def test_push_layout_versions_and_idempotency(assets, tmp_path):
    base = str(tmp_path / "repo")
    m0, m1 = assets["models"]
    before = repository.content_hash(m0)
    r1 = repository.push_model(m0, base, "digits", warmup_examples=assets["x"])
    assert (r1.version, r1.created) == (1, True)
    assert r1.path == os.path.join(base, "digits", "1")
    assert os.path.isfile(os.path.join(r1.path, "saved_model.pb"))
    assert os.path.isfile(warmup.warmup_path(r1.path))
    # Same content again: same version, nothing written.
    r2 = repository.push_model(m0, base, "digits", warmup_examples=assets["x"])
    assert (r2.version, r2.created, r2.content_sha256) == (1, False, r1.content_sha256)
    assert _entries(os.path.join(base, "digits")) == ["1"]
    # Different weights: next version; the source is never modified.
    r3 = repository.push_model(m1, base, "digits", warmup_examples=assets["x"])
    assert (r3.version, r3.created) == (2, True)
    assert r3.content_sha256 != r1.content_sha256
    assert repository.content_hash(m0) == before
    assert not os.path.exists(warmup.warmup_path(m0))
    # Same model, different warmup examples: different content, new version.
    r4 = repository.push_model(m0, base, "digits", warmup_examples=assets["x"][:4])
    assert r4.version == 3
    assert repository.list_versions(base, "digits") == [1, 2, 3]


def test_versions_continue_after_gaps_and_ignore_temporaries(assets, tmp_path):
    base = tmp_path / "repo"
    (base / "digits" / "7").mkdir(parents=True)
    (base / "digits" / ".8.tmp-abcd").mkdir()
    (base / "digits" / "notes").mkdir()
    assert repository.list_versions(str(base), "digits") == [7]
    r = repository.push_model(assets["models"][0], str(base), "digits")
    assert r.version == 8


def test_failed_push_leaves_nothing(assets, tmp_path):
    base = tmp_path / "repo"
    repository.push_model(assets["models"][0], str(base), "digits")
    with pytest.raises(DataError, match="warmup examples"):
        repository.push_model(
            assets["models"][1], str(base), "digits", warmup_examples=np.zeros((3,), np.float32)
        )
    assert _entries(base / "digits") == ["1"]  # no version 2, no temporary left behind


def test_push_rejects_non_savedmodel_and_bad_names(assets, tmp_path):
    with pytest.raises(ModelError, match="not a SavedModel"):
        repository.push_model(str(tmp_path), str(tmp_path / "repo"), "digits")
    with pytest.raises(ModelError, match="model_name"):
        repository.push_model(assets["models"][0], str(tmp_path / "repo"), "a/b")


def test_warmup_records_are_real_examples(assets, tmp_path):
    from tfopt._keras import tf

    r = repository.push_model(
        assets["models"][0], str(tmp_path / "repo"), "digits", warmup_examples=assets["x"]
    )
    requests = warmup.read_warmup(r.path)
    assert len(requests) == len(assets["x"])
    for i, req in enumerate(requests):
        assert req.model_spec.name == "digits"
        assert req.model_spec.signature_name == "serving_default"
        np.testing.assert_array_equal(tf.make_ndarray(req.inputs["x"]), assets["x"][i : i + 1])
    # The raw file is TFRecord of PredictionLog with predict_log set.
    from tensorflow_serving.apis import prediction_log_pb2

    raw = next(iter(tf.data.TFRecordDataset(warmup.warmup_path(r.path)).as_numpy_iterator()))
    assert prediction_log_pb2.PredictionLog.FromString(raw).WhichOneof("log_type") == "predict_log"
    examples = warmup.examples_from_dataset(assets["dataset"], "test", limit=5)
    assert examples.shape == (5, 8, 8, 1) and examples.dtype == np.float32
    batched = warmup.build_requests(assets["x"], "digits", batch_sizes=(1, 4))
    assert len(batched) == len(assets["x"]) + len(assets["x"]) // 4
