"""The tf_keras.applications families: built flat at small sizes, trained, weights loaded."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt._keras import keras
from tfopt.compression import lowrank, qat
from tfopt.errors import ConfigError, ModelError
from tfopt.training import applications, models, train

from helpers.data import synthetic_images


@pytest.fixture(scope="module")
def rgb32(tmp_path_factory) -> str:
    return synthetic_images(str(tmp_path_factory.mktemp("data") / "rgb32"), 96, (32, 32, 3), 4)


def _nested_models(model: keras.Model) -> list[str]:
    return [la.name for la in model.layers if isinstance(la, keras.Model)]


@pytest.mark.parametrize(
    ("arch", "alpha", "shape", "params"),
    [
        ("mobilenet_v2", 0.35, (32, 32, 3), (400_000, 500_000)),
        ("mobilenet_v3_small", 0.35, (28, 28, 1), (100_000, 200_000)),
        ("resnet50", 1.0, (32, 32, 3), (23_000_000, 24_000_000)),
        ("efficientnet_b0", 1.0, (28, 28, 1), (4_000_000, 4_100_000)),
    ],
)
def test_family_builds_flat_on_tfopt_conventions(arch, alpha, shape, params):
    model = models.build_model(models.ModelConfig(arch=arch, alpha=alpha), shape, 4)
    assert model.input_names == [models.INPUT_NAME]
    assert model.output_names == [models.OUTPUT_NAME]
    assert model.output_shape == (None, 4)
    assert _nested_models(model) == []  # the backbone is part of the one graph
    assert params[0] < models.count_params(model) < params[1]
    names = [la.name for la in model.layers]
    assert ("to_rgb" in names) == (shape[-1] == 1)
    assert ("resize" in names) == (shape[0] < applications.MIN_SIDE)
    p = model.predict(np.random.default_rng(0).random((2, *shape), np.float32), verbose=0)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)


def test_alpha_narrows_mobilenet_and_is_rejected_elsewhere():
    wide = models.build_model(models.ModelConfig(arch="mobilenet_v2"), (32, 32, 3), 4)
    narrow = models.build_model(models.ModelConfig(arch="mobilenet_v2", alpha=0.35), (32, 32, 3), 4)
    assert models.count_params(narrow) < models.count_params(wide) / 4
    with pytest.raises(ConfigError, match=r"alpha=0.5 is not allowed for arch 'resnet50'"):
        models.ModelConfig(arch="resnet50", alpha=0.5)
    with pytest.raises(ConfigError, match="arch"):
        models.ModelConfig(arch="vgg16")
    with pytest.raises(ModelError, match="needs image inputs"):
        models.build_model(models.ModelConfig(arch="mobilenet_v2"), (64,), 4)


def test_student_is_the_narrower_member():
    assert applications.student_config(models.ModelConfig(arch="mobilenet_v2")) == (
        models.ModelConfig(arch="mobilenet_v2", alpha=0.35)
    )
    small = applications.student_config(models.ModelConfig(arch="mobilenet_v2", alpha=0.35))
    assert small.alpha == pytest.approx(0.175)
    assert applications.student_config(models.ModelConfig(arch="resnet50")).arch == "mobilenet_v2"


def test_trains_and_saves_with_serving_signature(rgb32, tmp_path):
    out = str(tmp_path / "model")
    config = train.TrainConfig(
        model=models.ModelConfig(arch="mobilenet_v2", alpha=0.35, dropout=0.0),
        epochs=1,
        batch_size=32,
        early_stopping_patience=0,
    )
    result = train.train_model(rgb32, out, config)
    assert result.epochs_run == 1 and np.isfinite(result.history["loss"][-1])
    loaded = models.load_model(out)
    assert loaded.output_shape == (None, 4)
    assert any(isinstance(la, keras.layers.DepthwiseConv2D) for la in loaded.layers)
    # moving statistics that settle within an epoch, kept through save / load
    norms = [la for la in loaded.layers if isinstance(la, keras.layers.BatchNormalization)]
    assert norms and {la.momentum for la in norms} == {applications.BN_MOMENTUM}


@pytest.mark.parametrize("suffix", [".h5", ""])  # by layer name / TF checkpoint
def test_weights_uri_round_trip(tmp_path, suffix):
    shape, config = (32, 32, 3), models.ModelConfig(arch="mobilenet_v2", alpha=0.35)
    source = models.build_model(config, shape, 4)
    path = str(tmp_path / f"weights{suffix}")
    source.save_weights(path)
    loaded = models.build_model(
        models.ModelConfig(arch="mobilenet_v2", alpha=0.35, weights_uri=path), shape, 4
    )
    for a, b in zip(source.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_weights_uri_fills_the_backbone_by_name_and_rejects_a_mismatch(tmp_path):
    shape = (32, 32, 3)
    config = models.ModelConfig(arch="mobilenet_v2", alpha=0.35)
    # a backbone-only file (as ImageNet no_top files are): the head keeps its own weights
    backbone = keras.applications.MobileNetV2(
        input_shape=shape, alpha=0.35, include_top=False, weights=None
    )
    path = str(tmp_path / "no_top.h5")
    backbone.save_weights(path)
    model = models.build_model(
        models.ModelConfig(arch="mobilenet_v2", alpha=0.35, weights_uri=path), shape, 4
    )
    np.testing.assert_array_equal(
        model.get_layer("Conv1").get_weights()[0], backbone.get_layer("Conv1").get_weights()[0]
    )
    ten = str(tmp_path / "ten.h5")
    models.build_model(config, shape, 10).save_weights(ten)
    with pytest.raises(ModelError, match="does not fit the model"):
        models.build_model(
            models.ModelConfig(arch="mobilenet_v2", alpha=0.35, weights_uri=ten), shape, 4
        )
    other = str(tmp_path / "other.h5")
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="foreign")]).save_weights(other)
    with pytest.raises(ModelError, match=r"none of its 1 layers \(foreign...\) is a layer"):
        models.build_model(
            models.ModelConfig(arch="mobilenet_v2", alpha=0.35, weights_uri=other), shape, 4
        )
    with pytest.raises(ModelError, match="no such weights file"):
        models.build_model(
            models.ModelConfig(arch="mobilenet_v2", alpha=0.35, weights_uri=str(tmp_path / "x")),
            shape,
            4,
        )


def test_resnet50_backbone_is_quantization_aware():
    import tensorflow_model_optimization as tfmot

    model = models.build_model(models.ModelConfig(arch="resnet50"), (32, 32, 3), 4)
    annotated, quantized, kept, reasons = qat.annotate(model)
    assert kept == ["normalize"] and "registry" in reasons["normalize"]
    assert "conv1_bn" in quantized  # folded into conv1_conv
    with tfmot.quantization.keras.quantize_scope():
        qmodel = tfmot.quantization.keras.quantize_apply(
            annotated, tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
        )
    assert qat.quantized_fraction(qmodel, models.count_params(model)) > 0.99


def test_efficientnet_pointwise_convs_factorize():
    model = models.build_model(models.ModelConfig(arch="efficientnet_b0"), (32, 32, 3), 4)
    layer_plan = lowrank.plan(model, lowrank.LowRankConfig(energy=0.5))
    pointwise = [n for n in layer_plan if isinstance(model.get_layer(n), keras.layers.Conv2D)]
    assert len(pointwise) > 10
    for n in pointwise:
        assert model.get_layer(n).kernel_size == (1, 1)
        assert layer_plan[n]["params_after"] < layer_plan[n]["params_before"]


def test_preflight_rejects_a_missing_weights_file_and_a_flat_source(tmp_path):
    from tfopt.client import preflight

    params = {**preflight.pipeline_defaults(), "arch": "mobilenet_v2", "alpha": 0.35}
    preflight.check_pipeline_params(params, local=True)
    missing = str(tmp_path / "w.h5")
    with pytest.raises(ConfigError, match=r"weights_uri=.*w\.h5': no such file"):
        preflight.check_pipeline_params({**params, "weights_uri": missing}, local=True)
    with pytest.raises(ConfigError, match=r"arch='mobilenet_v2' needs image inputs"):
        preflight.check_pipeline_params({**params, "feature_shape": "64"}, local=True)


def test_distill_takes_a_student_builder(small_model_dir, digits_dir, tmp_path):
    from tfopt.compression import distill

    def build_student(shape, num_classes, units=0):
        inputs = keras.Input(shape, name="x")
        h = keras.layers.Flatten()(inputs)
        return keras.Model(inputs, keras.layers.Dense(num_classes + units, activation="softmax")(h))

    config = distill.DistillConfig(epochs=1, train_scratch=False)
    result = distill.distill_model(
        small_model_dir, digits_dir, str(tmp_path / "student"), config, build_student=build_student
    )
    assert result.student_params == 64 * 10 + 10
    assert models.load_model(result.model_path).output_shape == (None, 10)
    with pytest.raises(ModelError, match="build_student: model has 11 outputs"):
        distill.distill_model(
            small_model_dir,
            digits_dir,
            str(tmp_path / "bad"),
            config,
            build_student=lambda s, n: build_student(s, n, units=1),
        )
