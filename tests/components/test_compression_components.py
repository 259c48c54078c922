"""prune / lowrank / distill / qat / quantize components on a tiny trained CNN: outputs,
metadata the evaluation step reads, disabled and skipped inputs, recorded fallbacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from kfp import dsl

from tfopt._keras import keras, tf
from tfopt.components.compress import COMPONENTS
from tfopt.fsutil import read_json
from tfopt.training import models
from tfopt.training import tensorboard as tensorboard_lib

from helpers.compression import assert_no_wrappers

# the generated component of each technique (components/compress.py)
prune, quantize, lowrank, distill, qat = (
    COMPONENTS[n] for n in ("prune", "tflite", "lowrank", "distill", "qat")
)
KEYS = {"variant", "format", "skipped", "params", "sparsity", "notes"}


@pytest.fixture(scope="module")
def inputs(cnn, digits_dir):
    base = dsl.Model(
        uri=cnn,
        metadata={"variant": "baseline", "format": "saved_model", "params": 5000},
    )
    return base, dsl.Dataset(uri=digits_dir)


def out(tmp_path, name):
    return dsl.Model(uri=str(tmp_path / name))


def metrics(tmp_path, name="metrics"):
    return dsl.Metrics(uri=str(tmp_path / name))


def board(tmp_path, name="tensorboard"):
    return dsl.Artifact(uri=str(tmp_path / name))


@pytest.fixture(scope="module")
def pruned(tmp_path_factory, inputs):
    base, ds = inputs
    tmp = tmp_path_factory.mktemp("cprune")
    model, m = out(tmp, "pruned"), metrics(tmp)
    prune.python_func(
        model=base,
        dataset=ds,
        compressed_model=model,
        metrics=m,
        tensorboard=board(tmp),
        target_sparsity=0.7,
        epochs=2,
        batch_size=32,
    )
    assert tensorboard_lib.event_dirs(
        str(tmp / "tensorboard")
    )  # fine-tuning curves for TensorBoard
    return model, m


def test_prune_component(pruned):
    model, m = pruned
    assert set(model.metadata) >= KEYS
    assert model.metadata["variant"] == "pruned" and model.metadata["format"] == "saved_model"
    assert model.metadata["pruned_sparsity"] == pytest.approx(0.7, abs=0.01)
    assert 0.5 < model.metadata["sparsity"] < 0.7
    assert m.metadata["sparsity"] == pytest.approx(0.7, abs=0.01)
    assert model.metadata["params"] == models.count_params(models.load_model(model.path))
    assert_no_wrappers(model.path)


def test_quantize_component_on_the_pruned_model(tmp_path, inputs, pruned):
    _, ds = inputs
    model, _ = pruned
    tfl = out(tmp_path, "pruned_int8.tflite")
    quantize.python_func(
        model=model,
        dataset=ds,
        compressed_model=tfl,
        metrics=metrics(tmp_path),
        variant="pruned_int8",
        max_accuracy_drop=5.0,
    )
    meta = tfl.metadata
    assert meta["format"] == "tflite" and meta["quantization"] == "int8"
    assert meta["base"] == "pruned" and meta["sparsity"] == model.metadata["sparsity"]
    assert any("drop" in n for n in meta["notes"])
    assert Path(tfl.path).stat().st_size > 0


def test_quantize_component_records_an_unconvertible_model_as_skipped(tmp_path, inputs):
    _, ds = inputs
    x = keras.Input((8, 8, 1), name="x")
    h = keras.layers.Lambda(lambda t: tf.math.erf(t))(
        keras.layers.Dense(4)(keras.layers.Flatten()(x))
    )
    path = models.save_model(
        keras.Model(x, keras.layers.Dense(10, activation="softmax")(h)), str(tmp_path / "erf")
    )
    tfl = out(tmp_path, "x.tflite")
    quantize.python_func(
        model=dsl.Model(uri=path, metadata={"variant": "odd"}),
        dataset=ds,
        compressed_model=tfl,
        metrics=metrics(tmp_path),
        variant="tflite_int8",
    )
    assert (
        tfl.metadata["skipped"] is True and "float16 fallback failed" in tfl.metadata["skip_reason"]
    )


def test_lowrank_component(tmp_path, inputs):
    base, ds = inputs
    model, m = out(tmp_path, "lowrank"), metrics(tmp_path)
    lowrank.python_func(
        model=base,
        dataset=ds,
        compressed_model=model,
        metrics=m,
        rank=8,
        tensorboard=board(tmp_path),
        epochs=1,
        batch_size=32,
    )
    assert set(model.metadata) >= KEYS
    assert model.metadata["variant"] == "lowrank" and model.metadata["sparsity"] == 0.0
    assert model.metadata["layers"]["dense1"]["rank"] == 8
    assert m.metadata["factorized_reduction"] > 2
    assert_no_wrappers(model.path)


def test_distill_component(tmp_path, inputs):
    base, ds = inputs
    model, m = out(tmp_path, "student"), metrics(tmp_path)
    distill.python_func(
        model=base,
        dataset=ds,
        compressed_model=model,
        metrics=m,
        tensorboard=board(tmp_path),
        student_arch="mlp",
        student_width=8,
        student_depth=1,
        epochs=2,
        train_scratch=True,  # the comparison student (off by default)
    )
    assert tensorboard_lib.event_dirs(str(tmp_path / "tensorboard")) == [
        "distill/train",
        "scratch/train",
    ]
    assert set(model.metadata) >= KEYS and model.metadata["variant"] == "distilled"
    assert model.metadata["params"] == 610
    assert {"distilled_accuracy", "scratch_accuracy", "student_params"} <= set(m.metadata)


@pytest.mark.slow
def test_qat_component_preserving_sparsity(tmp_path, inputs, pruned):
    _, ds = inputs
    model, _ = pruned
    tfl, m = out(tmp_path, "pqat.tflite"), metrics(tmp_path)
    qat.python_func(
        model=model,
        dataset=ds,
        compressed_model=tfl,
        metrics=m,
        variant="pqat_int8",
        tensorboard=board(tmp_path),
        preserve_sparsity=True,
        epochs=1,
        batch_size=32,
    )
    meta = tfl.metadata
    assert meta["variant"] == "pqat_int8" and meta["format"] == "tflite"
    assert meta["base"] == "pruned" and meta["sparsity"] == model.metadata["sparsity"]
    assert m.metadata["sparsity_after"] == pytest.approx(m.metadata["sparsity_before"], abs=1e-3)
    assert Path(tfl.path).read_bytes()[4:8] == b"TFL3"


@pytest.mark.parametrize(
    ("component", "output"),
    [
        (prune, "compressed_model"),
        (lowrank, "compressed_model"),
        (distill, "compressed_model"),
        (qat, "compressed_model"),
    ],
)
def test_disabled_component_is_a_cheap_skip(tmp_path, inputs, component, output):
    base, ds = inputs
    result = out(tmp_path, "o")
    kwargs = {
        "model": base,
        "dataset": ds,
        output: result,
        "metrics": metrics(tmp_path),
        "tensorboard": board(tmp_path),
        "variant": "v",
        "enabled": False,
    }
    component.python_func(**kwargs)
    assert result.metadata == {
        "variant": "v",
        "skipped": True,
        "skip_reason": "disabled by pipeline parameter",
    }
    # a small file saying why, never a model; the other outputs exist (kfp.local's cache)
    assert read_json(result.path) == result.metadata
    assert Path(kwargs["metrics"].path).is_dir() and Path(kwargs["tensorboard"].path).is_dir()


def test_skipped_input_skips_the_output(tmp_path, inputs):
    _, ds = inputs
    skipped = dsl.Model(uri=str(tmp_path / "none"), metadata={"variant": "pruned", "skipped": True})
    tfl = out(tmp_path, "t")
    quantize.python_func(
        model=skipped,
        dataset=ds,
        compressed_model=tfl,
        metrics=metrics(tmp_path),
        variant="pruned_int8",
    )
    assert tfl.metadata["skipped"] and "pruned was skipped" in tfl.metadata["skip_reason"]


def test_a_technique_that_does_not_fit_the_model_skips_the_variant_with_the_reason(
    tmp_path, inputs
):
    _, ds = inputs
    tiny = models.build_model(models.ModelConfig(arch="mlp", width=4, depth=1), (8, 8, 1), 10)
    base = dsl.Model(
        uri=models.save_model(tiny, str(tmp_path / "tiny")),
        metadata={"variant": "baseline", "format": "saved_model"},
    )
    result = out(tmp_path, "lowrank")
    lowrank.python_func(
        model=base,
        dataset=ds,
        compressed_model=result,
        metrics=metrics(tmp_path),
        tensorboard=board(tmp_path),
        energy=0.99,
        epochs=1,
    )
    assert result.metadata["skipped"] is True
    assert "no layer to factorize" in result.metadata["skip_reason"]
    # nothing half-written for the evaluation step: only the file saying why
    assert read_json(result.path) == result.metadata
    with pytest.raises(Exception, match="LowRankConfig.energy"):  # bad config still fails
        lowrank.python_func(
            model=base,
            dataset=ds,
            compressed_model=out(tmp_path, "l2"),
            metrics=metrics(tmp_path, "m2"),
            tensorboard=board(tmp_path, "t2"),
            energy=1.5,
        )
