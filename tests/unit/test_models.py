import numpy as np
import pytest

from tfopt._keras import tf
from tfopt.errors import ConfigError, ModelError
from tfopt.training import models


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_build_model_maps_raw_features_to_probabilities(arch):
    model = models.build_model(
        models.ModelConfig(arch=arch, width=8, depth=2), (8, 8, 1), 10, mean=8.0, variance=36.0
    )
    out = model(np.random.default_rng(0).uniform(0, 16, (5, 8, 8, 1)).astype("float32"))
    assert out.shape == (5, 10)
    np.testing.assert_allclose(out.numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert model.input_names == [models.INPUT_NAME]
    assert model.output_names == [models.OUTPUT_NAME]


def test_cnn_needs_image_inputs():
    with pytest.raises(ModelError, match="needs image inputs"):
        models.build_model(models.ModelConfig(arch="cnn"), (64,), 10)


@pytest.mark.parametrize(
    ("field", "value"), [("arch", "rnn"), ("width", 0), ("depth", 17), ("dropout", 1.0)]
)
def test_model_config_rejects_bad_values(field, value):
    with pytest.raises(ConfigError, match=f"ModelConfig.{field}="):
        models.ModelConfig(**{field: value})


def test_save_model_writes_named_serving_signature(tmp_path):
    model = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
    path = models.save_model(model, str(tmp_path / "m"))
    sig = tf.saved_model.load(path).signatures["serving_default"]
    assert list(sig.structured_input_signature[1]) == ["x"]
    assert sig.structured_input_signature[1]["x"].shape.as_list() == [None, 8, 8, 1]
    assert list(sig.structured_outputs) == ["probabilities"]
    x = np.ones((3, 8, 8, 1), "float32")
    np.testing.assert_allclose(
        sig(x=tf.constant(x))["probabilities"].numpy(),
        models.load_model(path)(x).numpy(),
        rtol=1e-5,
    )
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary sibling left


def test_clone_model_copies_weights_without_sharing():
    model = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
    copy = models.clone_model(model)
    before = [w.copy() for w in model.get_weights()]
    copy.set_weights([w + 1 for w in copy.get_weights()])
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_load_model_rejects_non_savedmodel(tmp_path):
    (tmp_path / "junk").mkdir()
    with pytest.raises(ModelError, match="not a SavedModel"):
        models.load_model(str(tmp_path / "junk"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "saved_model.pb").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="cannot load"):
        models.load_model(str(tmp_path / "bad"))


def test_check_compatible_names_the_mismatch():
    model = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
    with pytest.raises(ModelError, match=r"input shape \(8, 8, 1\).*\(28, 28, 1\)"):
        models.check_compatible(model, (28, 28, 1), 10, "m")
    with pytest.raises(ModelError, match="10 outputs but the dataset has 3"):
        models.check_compatible(model, (8, 8, 1), 3, "m")
