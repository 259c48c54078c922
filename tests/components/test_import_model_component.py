"""import_model component on a plain SavedModel: the hand-off model, its inspect report,
metadata, and the prune component skipping it with the reason."""

from __future__ import annotations

import numpy as np
from kfp import dsl

from tfopt._keras import tf
from tfopt.components.compress import COMPONENTS
from tfopt.components.import_model import import_model
from tfopt.fsutil import read_json


class _Linear(tf.Module):
    def __init__(self):
        super().__init__()
        self.w = tf.Variable(np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x")])
    def __call__(self, x):
        return {"logits": tf.matmul(tf.reshape(x, [-1, 64]), self.w)}


def test_plain_saved_model_imports_and_prune_is_skipped_with_the_reason(tmp_path, digits_dir):
    module = _Linear()
    src = str(tmp_path / "plain")
    tf.saved_model.save(module, src, signatures={"serving_default": module.__call__})
    ds = dsl.Dataset(uri=digits_dir)
    model = dsl.Model(uri=str(tmp_path / "model"))
    report = dsl.Artifact(uri=str(tmp_path / "inspect"))
    uri = import_model.python_func(
        dataset=ds,
        model=model,
        metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
        inspect=report,
        model_uri=src,
        train_config={"epochs": 1},
    )
    assert uri == model.uri
    assert model.metadata["source_format"] == "saved_model"
    assert model.metadata["trainable"] is False and model.metadata["output"] == "logits"
    assert model.metadata["params"] == 640
    layers = read_json(report.path)["layers"]
    assert [r["prunable"] for r in layers] == [False] * len(layers)
    pruned = dsl.Model(uri=str(tmp_path / "pruned"))
    COMPONENTS["prune"].python_func(
        model=model,
        dataset=ds,
        compressed_model=pruned,
        metrics=dsl.Metrics(uri=str(tmp_path / "pm")),
        tensorboard=dsl.Artifact(uri=str(tmp_path / "tb")),
        epochs=1,
    )
    assert pruned.metadata["skipped"] and pruned.metadata["not_applicable"]
    assert "imported plain SavedModel has no Keras layers" in pruned.metadata["skip_reason"]
