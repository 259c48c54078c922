"""tf.data input pipelines: every example once per epoch, seeded order, cache budget,
auto-sharding across workers, streaming evaluation and bounded calibration samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tfopt._keras import tf
from tfopt.data import ingest, input_pipeline
from tfopt.errors import ConfigError

from helpers.data import canonical


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """600 synthetic 3x3x1 examples in 50-example shards (train has 9)."""
    path = str(tmp_path_factory.mktemp("pipe") / "syn")
    return ingest.ingest(
        path,
        ingest.IngestConfig(
            source="builtin:synthetic",
            synthetic_examples=600,
            synthetic_shape=(3, 3, 1),
            shard_size=50,
            synthetic_classes=3,
        ),
    )


def _epoch(ds):
    xs, ys = zip(*ds.as_numpy_iterator(), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("cache", ["memory", "none", "file"])
def test_every_example_once_per_epoch(sharded, tmp_path, cache):
    cache = str(tmp_path / "c") if cache == "file" else cache
    config = input_pipeline.InputConfig(batch_size=32, shuffle=True, cache=cache)
    ds = input_pipeline.make_dataset(sharded, "train", config)
    ref = canonical(*input_pipeline.load_arrays(sharded, "train"))
    first, second = _epoch(ds), _epoch(ds)
    for x, y in (first, second):
        assert x.shape[1:] == (3, 3, 1) and x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_array_equal(canonical(x, y), ref)
    assert not np.array_equal(first[1], second[1])  # reshuffled every epoch
    if cache not in ("memory", "none"):
        assert list(tmp_path.glob("c-train*"))  # the cache file was written


def test_seeded_order_is_deterministic(sharded):
    def order(seed):
        cfg = input_pipeline.InputConfig(batch_size=16, shuffle=True, seed=seed, cache="none")
        return _epoch(input_pipeline.make_dataset(sharded, "train", cfg))[0]

    np.testing.assert_array_equal(order(3), order(3))
    assert not np.array_equal(order(3), order(4))


def test_batches_and_drop_remainder(sharded):
    n = sharded.counts["train"]
    sizes = [
        len(y)
        for _, y in input_pipeline.make_dataset(
            sharded, "train", input_pipeline.InputConfig(batch_size=64, drop_remainder=True)
        )
    ]
    assert sizes == [64] * (n // 64)
    assert sum(len(y) for _, y in input_pipeline.make_dataset(sharded, "train", limit=100)) == 100


def test_known_batches_match_what_the_pipeline_yields(sharded):
    # Keras then ends an epoch without a step too many (see tfopt.training.resume)
    from tfopt.training import resume

    n = sharded.counts["train"]
    ds = resume.with_known_batches(
        input_pipeline.make_dataset(sharded, "train", input_pipeline.InputConfig(batch_size=64)),
        n,
        64,
    )
    assert int(ds.cardinality()) == sum(1 for _ in ds) == -(-n // 64)


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_skipping_epoch_orders_gives_the_order_an_uninterrupted_run_uses_next(sharded, cache):
    from tfopt.training import resume

    def fresh():
        tf.random.set_seed(1)
        return input_pipeline.make_dataset(
            sharded, "train", input_pipeline.InputConfig(batch_size=16, shuffle=True, cache=cache)
        )

    ds = fresh()
    orders = [_epoch(ds)[1] for _ in range(3)]
    resumed = fresh()
    resume.skip_epoch_orders(resumed, 2)
    np.testing.assert_array_equal(_epoch(resumed)[1], orders[2])
    assert not np.array_equal(orders[1], orders[2])


def test_completed_epochs_without_a_readable_backup_is_zero(tmp_path, caplog):
    from tfopt.training import resume

    assert resume.completed_epochs(str(tmp_path / "none")) == 0
    # a checkpoint of another layout: resume without aligning the order, and say so
    tf.train.Checkpoint(other=tf.Variable(3)).save(str(tmp_path / "b" / "chief" / "ckpt"))
    assert resume.completed_epochs(str(tmp_path / "b")) == 0
    assert "cannot read the finished epoch" in caplog.text


def test_cache_follows_the_memory_budget(sharded, monkeypatch):
    per_split = sharded.counts["train"] * (9 * 4 + 8)
    assert input_pipeline.cache_mode(sharded, "train", input_pipeline.InputConfig()) == "memory"
    small = input_pipeline.InputConfig(cache_budget_bytes=per_split - 1)
    assert input_pipeline.cache_mode(sharded, "train", small) == "none"
    to_file = input_pipeline.InputConfig(cache_budget_bytes=per_split - 1, cache_file="/tmp/x/c")
    assert input_pipeline.cache_mode(sharded, "train", to_file) == "/tmp/x/c-train"
    monkeypatch.setenv(
        "TF_CONFIG",
        json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}),
    )
    assert input_pipeline.cache_mode(sharded, "train", to_file) == "/tmp/x/c-train-worker1"
    with pytest.raises(ConfigError, match="cache_file"):
        input_pipeline.InputConfig(cache_file="gs://bucket/c")


def test_auto_shard_policy_choice():
    assert input_pipeline.auto_shard_policy(8, 4) == "FILE"
    assert input_pipeline.auto_shard_policy(4, 4) == "FILE"
    assert input_pipeline.auto_shard_policy(1, 2) == "DATA"
    assert input_pipeline.auto_shard_policy(1, 2, "off") == "OFF"
    with pytest.raises(ConfigError, match="auto_shard"):
        input_pipeline.InputConfig(auto_shard="rows")


@pytest.mark.parametrize(("workers", "policy"), [(3, "FILE"), (20, "DATA")])
def test_workers_get_disjoint_parts(sharded, workers, policy):
    from tensorflow.python.data.experimental.ops.distribute import _AutoShardDataset

    # cache="none": in one process the workers' in-memory caches would be one resource
    config = input_pipeline.InputConfig(
        batch_size=8, num_workers=workers, cache="none", shuffle=policy == "FILE"
    )
    ds = input_pipeline.make_dataset(sharded, "train", config)
    assert ds.options().experimental_distribute.auto_shard_policy == getattr(
        tf.data.experimental.AutoShardPolicy, policy
    )
    # what tf.distribute does to the dataset on each worker
    parts = [_epoch(_AutoShardDataset(ds, workers, i)) for i in range(workers)]
    parts = [p for p in parts if len(p[1])]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    np.testing.assert_array_equal(
        canonical(x, y), canonical(*input_pipeline.load_arrays(sharded, "train"))
    )
    if policy == "FILE":  # whole shards per worker: 9 shards over 3 workers
        assert sorted(len(p[1]) for p in parts) == [120, 150, 150]


def test_iter_arrays_streams_in_batches(sharded):
    batches = list(input_pipeline.iter_arrays(sharded, "test", batch_size=40))
    assert max(len(y) for _, y in batches) == 40
    x, y = np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])
    xl, yl = input_pipeline.load_arrays(sharded, "test")
    np.testing.assert_array_equal(x, xl)
    np.testing.assert_array_equal(y, yl)
    assert sum(len(y) for _, y in input_pipeline.iter_arrays(sharded, "test", limit=30)) == 30


def test_representative_samples_are_bounded_and_span_shards(sharded):
    samples = list(input_pipeline.representative_samples(sharded, limit=60, seed=1))
    assert len(samples) == 60
    assert all(
        len(s) == 1 and s[0].shape == (1, 3, 3, 1) and s[0].dtype == np.float32 for s in samples
    )
    # drawn across shards, not only from the first one
    shard_of = {}
    for i, f in enumerate(sharded.files("train")):
        for rec in tf.data.TFRecordDataset(f).as_numpy_iterator():
            ex = tf.train.Example.FromString(rec)
            shard_of[ex.features.feature["x"].bytes_list.value[0]] = i
    hit = {shard_of[s[0].tobytes()] for s in samples}
    assert len(hit) >= 4
    again = list(input_pipeline.representative_samples(sharded, limit=60, seed=1))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(samples, again, strict=True))
    with pytest.raises(ConfigError, match="limit"):
        next(input_pipeline.representative_samples(sharded, limit=0))
