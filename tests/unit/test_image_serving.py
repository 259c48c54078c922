"""The served image model takes the raw image and ships its label vocabulary."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from tfopt._keras import keras, tf
from tfopt.compression import tflite
from tfopt.errors import ModelError
from tfopt.training import models, signatures

NAMES = tuple(f"class {i}" for i in range(10))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A small 28x28x1 cnn saved as a uint8-image model with named classes."""
    keras.utils.set_random_seed(0)
    model = models.build_model(
        models.ModelConfig(width=4), (28, 28, 1), 10, mean=100.0, variance=3000.0
    )
    path = str(tmp_path_factory.mktemp("m") / "model")
    models.save_model(model, path, NAMES, uint8_images=True)
    return model, path


def _png(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.squeeze()).save(buf, format=fmt)
    return buf.getvalue()


def test_raw_and_encoded_images_give_serving_default_probabilities(saved):
    _, path = saved
    sigs = tf.saved_model.load(path).signatures
    assert {"serving_default", "classify", "serving_images", "serving_encoded"} <= set(sigs)
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 28, 28, 1), dtype=np.uint8)
    want = sigs["serving_default"](x=tf.constant(img, tf.float32))["probabilities"].numpy()
    raw = sigs["serving_images"](images=tf.constant(img))["probabilities"].numpy()
    np.testing.assert_allclose(raw, want, rtol=0, atol=1e-6)
    enc = sigs["serving_encoded"](image_bytes=tf.constant([_png(i) for i in img]))
    np.testing.assert_allclose(enc["probabilities"].numpy(), want, rtol=0, atol=1e-6)


def test_a_larger_rgb_image_is_adapted_as_ingest_would(saved):
    """56x56 RGB in: grayscale + bilinear antialiased resize inside the graph, matching
    Pillow's conversion at ingest (data/images.py) to within one grey level."""
    _, path = saved
    sigs = tf.saved_model.load(path).signatures
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    rgb = np.stack([np.kron(small, np.ones((2, 2), np.uint8))] * 3, axis=-1)  # 56x56x3
    pil = Image.fromarray(rgb).convert("L").resize((28, 28), Image.Resampling.BILINEAR)
    reference = np.asarray(pil, np.float32)[None, :, :, None]
    want = sigs["serving_default"](x=tf.constant(reference))["probabilities"].numpy()
    got = sigs["serving_images"](images=tf.constant(rgb[None]))["probabilities"].numpy()
    assert got.shape == (1, 10) and abs(got.sum() - 1) < 1e-5
    np.testing.assert_allclose(got, want, atol=0.02)
    jpeg = sigs["serving_encoded"](image_bytes=tf.constant([_png(rgb, "JPEG")]))
    assert jpeg["probabilities"].shape == (1, 10)
    with pytest.raises(tf.errors.InvalidArgumentError, match="1 \\(grayscale\\) or 3"):
        sigs["serving_images"](images=tf.zeros([1, 28, 28, 2], tf.uint8))


def test_labels_asset_is_tracked_and_the_model_is_left_as_it_was(saved, tmp_path):
    model, path = saved
    assert signatures.read_labels(path) == list(NAMES)
    from tensorflow.core.protobuf import saved_model_pb2

    with open(f"{path}/saved_model.pb", "rb") as fh:
        meta = saved_model_pb2.SavedModel.FromString(fh.read()).meta_graphs[0]
    assert [a.filename for a in meta.asset_file_def] == [signatures.LABELS_ASSET]
    # the same in-memory model saved again without names: no stale asset, no image signatures
    again = str(tmp_path / "again")
    models.save_model(model, again)
    assert signatures.read_labels(again) == []
    assert set(tf.saved_model.load(again).signatures) == {"serving_default"}
    with pytest.raises(ModelError, match="line breaks"):
        models.save_model(model, str(tmp_path / "bad"), ("a\nb",) + NAMES[1:])


def test_tflite_conversion_still_uses_serving_default(saved, tmp_path):
    _, path = saved
    out = str(tmp_path / "m.tflite")
    tflite.convert_to_tflite(path, None, out, tflite.TFLiteConfig(mode="float32"))
    sig = tf.lite.Interpreter(model_path=out).get_signature_list()
    assert list(sig) == ["serving_default"] and sig["serving_default"]["inputs"] == ["x"]


def test_non_image_models_get_no_image_signature(tmp_path):
    model = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (64,), 3)
    models.save_model(model, str(tmp_path / "m"), uint8_images=True)
    assert set(tf.saved_model.load(str(tmp_path / "m")).signatures) == {"serving_default"}


def test_the_rest_api_serves_raw_and_b64_images(saved, tmp_path):
    """TF Serving's REST API (the in-process stand-in): a client sends the picture."""
    import shutil

    from tfopt.deploy.serving import client as clients
    from tfopt.deploy.serving import server

    _, path = saved
    shutil.copytree(path, tmp_path / "repo" / "clf" / "1")
    img = np.random.default_rng(2).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    sigs = tf.saved_model.load(path).signatures
    want = sigs["serving_default"](x=tf.constant(img[None], tf.float32))["probabilities"]
    with server.ModelServer(str(tmp_path / "repo"), "clf", poll_seconds=60) as srv:
        rest = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}")
        raw = rest.predict("clf", instances=[img.tolist()], signature_name="serving_images")
        b64 = {"b64": base64.b64encode(_png(img)).decode()}
        enc = rest.predict("clf", instances=[b64], signature_name="serving_encoded")
        rest.close()
    np.testing.assert_allclose(raw["predictions"], want.numpy(), atol=1e-6)
    np.testing.assert_allclose(enc["predictions"], want.numpy(), atol=1e-6)
