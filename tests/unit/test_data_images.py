"""Image folders: layouts, class vocabulary, conversion, uint8 storage, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfopt.data import images, ingest, input_pipeline
from tfopt.data import schema as schema_lib
from tfopt.errors import ConfigError, DataError

# class -> grey level of its images, so labels can be checked from the pixels
LEVELS = {"cat": 40, "dog": 130, "emu": 220}


def _img(value: int, size=(6, 8), mode="L") -> Image.Image:
    arr = np.full((size[0], size[1]), value, np.uint8)
    img = Image.fromarray(arr, "L")
    return img.convert(mode) if mode != "L" else img


def make_folder(root: Path, counts=None, size=(6, 8), fmt="PNG", mode="L") -> Path:
    counts = counts or {"cat": 12, "dog": 12, "emu": 4}  # emu: an imbalanced class
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            ext = "png" if fmt == "PNG" else "jpg"
            _img(LEVELS[cls], size, mode).save(root / cls / f"{i:03d}.{ext}", fmt)
    return root


def _ingest(tmp_path, src, **kw):
    return ingest.ingest(str(tmp_path / "ds"), ingest.IngestConfig(source=str(src), **kw))


def _all(info):
    xs, ys = [], []
    for s in schema_lib.SPLITS:
        if info.counts[s]:
            x, y = input_pipeline.load_arrays(info, s)
            xs.append(x)
            ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def test_class_folders_become_sorted_label_ids_stored_as_uint8(tmp_path):
    src = make_folder(tmp_path / "src")
    (src / ".DS_Store").write_bytes(b"junk")  # hidden, at the top
    (src / "cat" / ".hidden.png").write_bytes(b"junk")
    (src / "dog" / "notes.txt").write_text("not an image")
    (src / ".git").mkdir()
    info = _ingest(tmp_path, src)
    assert info.class_names == ("cat", "dog", "emu") and info.num_classes == 3
    assert info.feature_dtype == "uint8" and info.feature_shape == (6, 8, 1)
    assert sum(info.counts.values()) == 28
    raw = json.loads((tmp_path / "ds" / "schema.json").read_text())
    assert raw["label"]["vocabulary"] == ["cat", "dog", "emu"]
    assert raw["images"]["ignored_hidden"] == 3 and raw["images"]["ignored_non_image"] == 1
    assert raw["images"]["read"] == 28 and raw["images"]["skipped_corrupt"] == 0
    x, y = _all(schema_lib.load_info(str(tmp_path / "ds")))
    levels = np.asarray(list(LEVELS.values()))
    assert (x[:, 0, 0, 0] == levels[y]).all()  # no example got another class's label
    assert np.bincount(y).tolist() == [12, 12, 4]


def test_train_test_layout_keeps_the_test_folder(tmp_path):
    make_folder(tmp_path / "src" / "train")
    make_folder(tmp_path / "src" / "test", counts={"cat": 3, "dog": 2, "emu": 1})
    info = _ingest(tmp_path, tmp_path / "src")
    assert info.counts["test"] == 6 and info.counts["train"] + info.counts["validation"] == 28
    assert info.class_counts["test"] == [3, 2, 1]


def test_mixed_sizes_and_grey_rgb_mixture_convert_at_ingest(tmp_path):
    src = make_folder(tmp_path / "src", counts={"cat": 5, "dog": 5}, size=(10, 12))
    _img(LEVELS["dog"], (7, 5), "RGB").save(src / "dog" / "rgb.jpg", "JPEG", quality=95)
    with pytest.raises(DataError, match="images differ in size.*set image_size"):
        _ingest(tmp_path, src)
    info = _ingest(tmp_path, src, image_size=(4, 6))
    assert info.feature_shape == (4, 6, 3)  # any colour image -> 3 channels
    x, y = _all(info)
    levels = np.asarray(list(LEVELS.values()))[:2]
    assert np.abs(x - levels[y][:, None, None, None]).max() <= 3  # JPEG is lossy by a little
    grey = ingest.ingest(
        str(tmp_path / "g"), ingest.IngestConfig(source=str(src), image_size=(4, 6), channels=1)
    )
    assert grey.feature_shape == (4, 6, 1)


def test_corrupt_and_truncated_images_are_named_or_skipped_and_counted(tmp_path):
    src = make_folder(tmp_path / "src", fmt="JPEG")
    good = (src / "cat" / "000.jpg").read_bytes()
    (src / "cat" / "cut.jpg").write_bytes(good[: len(good) // 2])  # truncated
    (src / "dog" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")  # corrupt
    with pytest.raises(DataError, match=r"(cut\.jpg|bad\.png): not a readable image"):
        _ingest(tmp_path, src)
    assert not (tmp_path / "ds").exists()
    info = _ingest(tmp_path, src, skip_corrupt_images=True)
    assert sum(info.counts.values()) == 28
    raw = json.loads((tmp_path / "ds" / "schema.json").read_text())
    assert raw["images"]["skipped_corrupt"] == 2
    assert sorted(Path(p).name for p in raw["images"]["skipped_files"]) == ["bad.png", "cut.jpg"]


def test_empty_class_folder_and_single_class_fail_clearly(tmp_path):
    src = make_folder(tmp_path / "a")
    (src / "fox").mkdir()
    (src / "fox" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"a/fox: class folder holds no images"):
        _ingest(tmp_path, src)
    one = make_folder(tmp_path / "b", counts={"cat": 5})
    with pytest.raises(DataError, match="single class folder"):
        _ingest(tmp_path, one)


def test_stratified_subset_of_a_folder(tmp_path):
    src = make_folder(tmp_path / "src", counts={"cat": 30, "dog": 30, "emu": 10})
    info = _ingest(tmp_path, src, max_examples=14)
    _, y = _all(info)
    assert np.bincount(y).tolist() == [6, 6, 2]


def test_image_size_and_channels_are_validated():
    with pytest.raises(ConfigError, match="image_size"):
        ingest.IngestConfig(image_size=(28,))
    with pytest.raises(ConfigError, match="channels"):
        ingest.IngestConfig(channels=2)


def test_scan_only_sees_class_folders_with_images(tmp_path):
    (tmp_path / "x" / "sub").mkdir(parents=True)
    (tmp_path / "x" / "sub" / "a.txt").write_text("x")
    assert not images.is_image_folder(str(tmp_path / "x"))
    assert images.is_image_folder(str(make_folder(tmp_path / "y")))


def _gradient_dataset(tmp_path) -> schema_lib.DatasetInfo:
    """Images whose pixels are all distinct, so flips and crops are recognisable."""
    root = tmp_path / "grad"
    base = (np.arange(6 * 8).reshape(6, 8) * 5).astype(np.uint8)
    for cls, k in (("a", 0), ("b", 1)):
        (root / cls).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(base + k).save(root / cls / f"{i}.png")
    return ingest.ingest(
        str(tmp_path / "gds"), ingest.IngestConfig(source=str(root), test_fraction=0.0)
    )


def _batch(info, **aug):
    cfg = input_pipeline.InputConfig(batch_size=64, shuffle=False, seed=5, **aug)
    x, y = next(iter(input_pipeline.make_dataset(info, "train", cfg)))
    return x.numpy(), y.numpy()


def test_augmentation_is_off_by_default_seeded_and_exact(tmp_path):
    info = _gradient_dataset(tmp_path)
    plain, y = _batch(info)
    originals = np.stack([plain[i] for i in range(len(y))])
    flipped, _ = _batch(info, augment_flip=True)
    same = (flipped == originals).all(axis=(1, 2, 3))
    mirror = (flipped == originals[:, :, ::-1]).all(axis=(1, 2, 3))
    assert (same | mirror).all() and same.any() and mirror.any()  # per image, both seen
    np.testing.assert_array_equal(flipped, _batch(info, augment_flip=True)[0])  # seeded
    cropped, _ = _batch(info, augment_crop=2)
    for img, orig in zip(cropped, originals, strict=True):  # a shifted window of the image
        padded = np.pad(orig[..., 0], 2, mode="symmetric")
        assert any(
            np.allclose(img[..., 0], padded[i : i + 6, j : j + 8], atol=1e-3)
            for i in range(5)
            for j in range(5)
        )
    bright, _ = _batch(info, augment_brightness=0.1)
    delta = (bright - originals)[:, 2:4, 2:4]  # inner pixels: no clipping
    assert np.abs(delta).max() <= 25.5 + 1e-3 and np.ptp(delta.mean(axis=(1, 2, 3))) > 1
    with pytest.raises(ConfigError, match="augment_brightness"):
        input_pipeline.InputConfig(augment_brightness=2.0)


def test_a_model_trained_on_named_classes_serves_them_through_classify(tmp_path):
    """The folder's class names reach the served model: train writes a ``classify``
    signature (TF Serving's Classify API) whose classes are the vocabulary."""
    from tfopt.deploy.serving import client as clients
    from tfopt.deploy.serving import server
    from tfopt.training import models, train

    info = _ingest(tmp_path, make_folder(tmp_path / "src", {"cat": 20, "dog": 20, "emu": 20}))
    out = tmp_path / "repo" / "clf" / "1"
    config = train.TrainConfig(
        model=models.ModelConfig(arch="mlp", width=8, depth=1), epochs=1, batch_size=16
    )
    train.train_model(info.path, str(out), config)
    x, _ = input_pipeline.load_arrays(info, "test")
    with server.ModelServer(str(tmp_path / "repo"), "clf", poll_seconds=60) as srv:
        rest = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}")
        doc = rest.classify("clf", [{"x": x[0].reshape(-1).tolist()}], signature_name="classify")
        rest.close()
    assert [c[0] for c in doc["results"][0]] == ["cat", "dog", "emu"]
