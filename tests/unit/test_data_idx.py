"""IDX (MNIST-family) directories, builtin:fashion_mnist and stratified subsets."""

from __future__ import annotations

import gzip
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from tfopt.data import idx, ingest, input_pipeline, subset
from tfopt.data import schema as schema_lib
from tfopt.errors import ConfigError, DataError

from helpers.prerequisites import missing


def _idx_bytes(arr: np.ndarray) -> bytes:
    return (
        struct.pack(">HBB", 0, 0x08, arr.ndim)
        + struct.pack(f">{arr.ndim}I", *arr.shape)
        + arr.astype(np.uint8).tobytes()
    )


def write_idx_dir(root: Path, n_train=120, n_test=40, h=5, w=4, classes=3, gz=True, seed=0):
    """Images whose pixels encode (split, index) so the round trip can be checked exactly."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, classes, n).astype(np.uint8)
        x = rng.integers(0, 256, (n, h, w)).astype(np.uint8)
        x[:, 0, 0] = y  # label readable from the image
        for kind, arr, nd in (("images", x, 3), ("labels", y, 1)):
            name = f"{prefix}-{kind}-idx{nd}-ubyte" + (".gz" if gz else "")
            data = _idx_bytes(arr)
            (root / name).write_bytes(gzip.compress(data) if gz else data)
        out[prefix] = (x, y)
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dir_round_trips_as_uint8_and_keeps_its_test_split(tmp_path, gz):
    arrays = write_idx_dir(tmp_path / "src", gz=gz)
    info = ingest.ingest(str(tmp_path / "ds"), ingest.IngestConfig(source=str(tmp_path / "src")))
    assert info.feature_dtype == "uint8" and info.feature_shape == (5, 4, 1)
    assert info.counts["test"] == 40 and info.counts["train"] + info.counts["validation"] == 120
    raw = json.loads((tmp_path / "ds" / "schema.json").read_text())
    assert raw["feature"]["dtype"] == "uint8"
    # 1 byte per pixel on disk: less than float32 features alone would take
    size = sum(os.path.getsize(f) for s in schema_lib.SPLITS for f in info.files(s))
    assert size < 160 * 20 * 4
    x, y = input_pipeline.load_arrays(schema_lib.load_info(str(tmp_path / "ds")), "test")
    assert x.dtype == np.float32 and x.max() <= 255
    assert (x[:, 0, 0, 0] == y).all()  # each image still has its own label
    ref = {bytes(r) for r in arrays["t10k"][0].reshape(40, -1)}
    assert {bytes(r.astype(np.uint8)) for r in x.reshape(40, -1)} == ref


def test_dot_spelling_is_accepted_and_test_files_are_optional(tmp_path):
    write_idx_dir(tmp_path / "src", gz=False)
    src = tmp_path / "src"
    for f in list(src.iterdir()):
        if f.name.startswith("t10k"):
            f.unlink()
        else:
            f.rename(src / f.name.replace("-idx", ".idx"))
    info = ingest.ingest(str(tmp_path / "ds"), ingest.IngestConfig(source=str(src)))
    assert sum(info.counts.values()) == 120 and info.counts["test"] > 0  # split three ways


def _corrupt(path: Path, fn):
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(fn(data)))


@pytest.mark.parametrize(
    ("target", "fn", "message"),
    [
        ("train-images-idx3-ubyte.gz", lambda d: b"\x00\x00\x08\x02" + d[4:], "bad magic number"),
        ("train-labels-idx1-ubyte.gz", lambda d: b"\x00\x00\x0d\x01" + d[4:], "bad magic number"),
        ("train-images-idx3-ubyte.gz", lambda d: d[:-7], "truncated"),
        ("train-labels-idx1-ubyte.gz", lambda d: d[:3], "truncated in the header"),
        (
            "t10k-labels-idx1-ubyte.gz",
            lambda d: d[:4] + struct.pack(">I", 39) + d[8:-1],
            "holds 40 images but",
        ),
    ],
)
def test_bad_idx_files_get_a_clear_error_naming_the_file(tmp_path, target, fn, message):
    write_idx_dir(tmp_path / "src")
    _corrupt(tmp_path / "src" / target, fn)
    with pytest.raises(DataError, match=message) as err:
        ingest.ingest(str(tmp_path / "ds"), ingest.IngestConfig(source=str(tmp_path / "src")))
    assert target.split(".")[0] in str(err.value)
    assert not (tmp_path / "ds").exists()


def test_gzip_cut_short_is_reported_as_truncated(tmp_path):
    write_idx_dir(tmp_path / "src")
    f = tmp_path / "src" / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: file is truncated"):
        ingest.ingest(str(tmp_path / "ds"), ingest.IngestConfig(source=str(tmp_path / "src")))


def test_missing_label_file_is_named(tmp_path):
    write_idx_dir(tmp_path / "src")
    (tmp_path / "src" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="not t10k-labels-idx1-ubyte"):
        ingest.ingest(str(tmp_path / "ds"), ingest.IngestConfig(source=str(tmp_path / "src")))


def test_max_examples_takes_a_seeded_stratified_subset(tmp_path):
    arrays = write_idx_dir(tmp_path / "src", n_train=600, n_test=200, classes=4)
    cfg = ingest.IngestConfig(source=str(tmp_path / "src"), max_examples=100, seed=3)
    info = ingest.ingest(str(tmp_path / "a"), cfg)
    assert sum(info.counts.values()) == 100 and info.counts["test"] == 25  # 600:200 kept
    train_counts = np.bincount(arrays["train"][1], minlength=4)
    kept = np.add(info.class_counts["train"], info.class_counts["validation"])
    np.testing.assert_allclose(kept, train_counts / 600 * 75, atol=1)  # class shares kept
    again = ingest.ingest(str(tmp_path / "b"), cfg)
    assert again.content_sha256 == info.content_sha256
    other = ingest.ingest(
        str(tmp_path / "c"), ingest.IngestConfig(source=cfg.source, max_examples=100, seed=4)
    )
    assert other.content_sha256 != info.content_sha256


def test_stratified_mask_keeps_rare_classes_and_exact_count():
    y = np.asarray([0] * 97 + [1] * 3)
    mask = subset.stratified_mask(y, 10, seed=0)
    assert mask.sum() == 10 and (y[mask] == 1).sum() == 1
    assert subset.stratified_mask(y, 500, seed=0).all()


def test_max_examples_is_refused_for_streaming_sources(tmp_path):
    with pytest.raises(ConfigError, match="max_examples=10 is not allowed for source"):
        ingest.ingest(
            str(tmp_path / "d"), ingest.IngestConfig(source="builtin:synthetic", max_examples=10)
        )
    with pytest.raises(ConfigError, match="max_examples"):
        ingest.IngestConfig(max_examples=-1)


def test_builtin_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv(idx.FASHION_MNIST_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        ingest.ingest(str(tmp_path / "ds"), ingest.IngestConfig(source="builtin:fashion_mnist"))


def test_builtin_fashion_mnist_reads_any_idx_dir_with_its_class_names(tmp_path, monkeypatch):
    write_idx_dir(tmp_path / "fm", classes=10, n_train=300, n_test=100)
    monkeypatch.setenv(idx.FASHION_MNIST_ENV, str(tmp_path / "fm"))
    info = ingest.ingest(str(tmp_path / "ds"), ingest.IngestConfig(source="builtin:fashion_mnist"))
    loaded = schema_lib.load_info(str(tmp_path / "ds"))
    assert loaded.class_names == idx.FASHION_MNIST_CLASSES == info.class_names
    raw = json.loads((tmp_path / "ds" / "schema.json").read_text())
    assert raw["label"]["vocabulary"][9] == "Ankle boot"


def test_real_fashion_mnist_subset(tmp_path, monkeypatch):
    if not idx.is_idx_dir(idx.FASHION_MNIST_DIR):
        missing("dataset-fashion-mnist", "sudo apt-get install dataset-fashion-mnist")
    monkeypatch.delenv(idx.FASHION_MNIST_ENV, raising=False)
    cfg = ingest.IngestConfig(source="builtin:fashion_mnist", max_examples=700)
    info = ingest.ingest(str(tmp_path / "ds"), cfg)
    assert sum(info.counts.values()) == 700 and info.counts["test"] == 100  # 60k:10k
    assert info.class_counts["test"] == [10] * 10  # the real test split is balanced
    x, _ = input_pipeline.load_arrays(info, "train", limit=50)
    assert x.shape == (50, 28, 28, 1) and 200 < x.max() <= 255


def test_uint8_dataset_reingests_as_uint8_and_uint8_npz_stays_uint8(tmp_path):
    write_idx_dir(tmp_path / "src")
    first = ingest.ingest(str(tmp_path / "a"), ingest.IngestConfig(source=str(tmp_path / "src")))
    again = ingest.ingest(str(tmp_path / "b"), ingest.IngestConfig(source=str(tmp_path / "a")))
    assert again.feature_dtype == "uint8" and again.feature_shape == first.feature_shape
    xa = np.concatenate([input_pipeline.load_arrays(first, s)[0] for s in schema_lib.SPLITS])
    xb = np.concatenate([input_pipeline.load_arrays(again, s)[0] for s in schema_lib.SPLITS])
    assert sorted(map(bytes, xa.astype(np.uint8))) == sorted(map(bytes, xb.astype(np.uint8)))
    x = np.random.default_rng(0).integers(0, 256, (60, 4, 4)).astype(np.uint8)
    np.savez(tmp_path / "u8.npz", x=x, y=np.arange(60) % 3)
    info = ingest.ingest(str(tmp_path / "c"), ingest.IngestConfig(source=str(tmp_path / "u8.npz")))
    assert info.feature_dtype == "uint8" and info.feature_shape == (4, 4, 1)


def test_representative_samples_of_uint8_data_are_the_stored_pixels_as_float32(tmp_path):
    arrays = write_idx_dir(tmp_path / "src")
    info = ingest.ingest(str(tmp_path / "ds"), ingest.IngestConfig(source=str(tmp_path / "src")))
    samples = list(input_pipeline.representative_samples(info, limit=30, seed=1))
    assert len(samples) == 30
    stored = {bytes(r) for r in arrays["train"][0].reshape(120, -1)}
    for (x,) in samples:
        assert x.dtype == np.float32 and x.shape == (1, 5, 4, 1)
        assert bytes(x.astype(np.uint8).reshape(-1)) in stored  # same values, no rescaling
