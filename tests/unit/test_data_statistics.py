"""Statistics written by ingest in its own pass (issue 34): per feature / channel moments and
histograms, the class distribution, image sizes; and what every saved model carries."""

import json
import os

import numpy as np
import pytest

from tfopt import model_info
from tfopt.data import drift, ingest, input_pipeline, schema, statistics


def _train_arrays(dataset_dir):
    info = schema.load_info(dataset_dir)
    return input_pipeline.load_arrays(info, "train")


def test_ingest_writes_the_statistics_of_each_split(digits_dir):
    stats = statistics.load_statistics(digits_dir)
    assert stats["format"] == statistics.STATISTICS_FORMAT
    assert stats["feature_axis"] == "channel" and stats["feature_shape"] == [8, 8, 1]
    info = schema.load_info(digits_dir)
    for split in ("train", "validation", "test"):
        s = stats["splits"][split]
        assert s["class_counts"] == info.class_counts[split]
        assert s["num_examples"] == info.counts[split]
        assert abs(sum(s["class_distribution"]) - 1) < 1e-4
    x, _ = _train_arrays(digits_dir)
    (f,) = stats["splits"]["train"]["features"]
    assert f["name"] == "x[..., 0]" and f["count"] == x.size and f["missing"] == 0
    assert f["mean"] == pytest.approx(x.mean(), abs=1e-4)
    assert f["std"] == pytest.approx(x.std(), abs=1e-4)
    assert (f["min"], f["max"]) == (0.0, 16.0)
    _, width, counts = statistics.histogram_counts(f)
    assert counts.sum() == x.size and width == 0.5  # 64 dyadic bins hold 0..16
    assert counts[0] == np.count_nonzero(x == 0)  # the zeros' bin, exactly


def test_uint8_images_have_one_bin_per_value_and_exact_moments():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 200, (300, 6, 5, 3), dtype=np.uint8)
    y = rng.integers(0, 4, 300)
    acc = statistics.DatasetStatistics()
    for i in range(0, 300, 70):
        acc.add("train", x[i : i + 70], y[i : i + 70])
    out = acc.result((6, 5, 3), "uint8", 4, None)["splits"]["train"]
    assert [f["name"] for f in out["features"]] == ["x[..., 0]", "x[..., 1]", "x[..., 2]"]
    for c, f in enumerate(out["features"]):
        v = x[..., c]
        assert f["mean"] == pytest.approx(v.mean(), abs=1e-5)
        assert f["std"] == pytest.approx(v.std(), abs=1e-5)
        assert (f["min"], f["max"]) == (v.min(), v.max())
        lo, width, counts = statistics.histogram_counts(f)
        assert width == 1.0
        assert counts.tolist() == np.bincount(v.ravel())[int(lo) :].tolist()
    assert out["class_counts"] == np.bincount(y, minlength=4).tolist()


def test_a_growing_range_keeps_every_count_on_a_coarser_grid():
    rng = np.random.default_rng(1)
    first = rng.uniform(0, 1, (50, 4)).astype(np.float32)
    later = rng.uniform(-300, 900, (50, 4)).astype(np.float32)
    streamed = statistics.DatasetStatistics()
    streamed.add("train", first, np.zeros(50, np.int64))
    streamed.add("train", later, np.ones(50, np.int64))
    whole = statistics.DatasetStatistics()
    whole.add("train", np.concatenate([first, later]), np.zeros(100, np.int64))
    a = streamed.result((4,), "float32", 2, None)["splits"]["train"]["features"]
    b = whole.result((4,), "float32", 2, None)["splits"]["train"]["features"]
    assert [f["name"] for f in a] == ["x[0]", "x[1]", "x[2]", "x[3]"]  # a vector: per value
    for fa, fb in zip(a, b, strict=True):
        assert statistics.histogram_counts(fa)[2].sum() == 100
        assert drift.js_divergence(fa, fb) == pytest.approx(0.0, abs=1e-12)
        lo, width, _ = statistics.histogram_counts(fa)
        assert np.log2(width) == int(np.log2(width)) and lo % width == 0  # dyadic


def test_image_folders_record_the_sizes_before_resizing(tmp_path):
    from PIL import Image

    for cls, sizes in {"cat": [(10, 12), (10, 12), (20, 8)], "dog": [(10, 12), (7, 7)]}.items():
        os.makedirs(tmp_path / "img" / cls)
        for i, (h, w) in enumerate(sizes):
            Image.new("L", (w, h), color=40 * i).save(tmp_path / "img" / cls / f"{i}.png")
    out = str(tmp_path / "ds")
    ingest.ingest(
        out,
        ingest.IngestConfig(
            source=str(tmp_path / "img"), image_size=(8, 8), validation_fraction=0.0
        ),
    )
    sizes = statistics.load_statistics(out)["image_sizes"]
    assert sizes["distinct"] == 3
    assert sizes["most_common"][0] == {"height": 10, "width": 12, "count": 3}
    assert sizes["height"] == {"min": 7, "max": 20} and sizes["width"] == {"min": 7, "max": 12}


def test_a_saved_model_carries_the_data_it_was_trained_on(small_model_dir, digits_dir):
    data = model_info.read_model_data(small_model_dir)
    assert data["format"] == statistics.DATA_RECORD_FORMAT
    info = schema.load_info(digits_dir)
    assert data["dataset"]["content_sha256"] == info.content_sha256
    assert data["dataset"]["num_classes"] == 10 and data["dataset"]["feature_shape"] == [8, 8, 1]
    assert data["statistics"] == statistics.load_statistics(digits_dir)


def test_a_dataset_ingested_before_statistics_existed_gives_none(tmp_path, digits_dir):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(digits_dir, old)
    os.remove(old / statistics.STATISTICS_FILE)
    record = statistics.data_record(schema.load_info(str(old)))
    assert record["statistics"] is None and record["dataset"]["num_classes"] == 10
    with open(old / schema.SCHEMA_FILE) as fh:
        assert "statistics" not in json.load(fh)  # a file of its own: the schema is unchanged
