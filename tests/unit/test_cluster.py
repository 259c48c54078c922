"""Weight clustering on the tiny CNN: values per kernel, accuracy, gzip size, a nested model,
cluster-preserving QAT, the registry entries and bad settings."""

from __future__ import annotations

import numpy as np
import pytest

from tfopt import fsutil, registry
from tfopt._keras import keras, tf
from tfopt.compression import cluster, qat
from tfopt.errors import ConfigError, ModelError
from tfopt.training import models

from helpers.compression import accuracy, assert_no_wrappers, assert_unchanged, snapshot

COUNT = 8


@pytest.fixture(scope="module")
def clustered(tmp_path_factory, digits_dir, cnn):
    before = snapshot(cnn)
    out = str(tmp_path_factory.mktemp("cluster") / "clustered")
    result = cluster.cluster_model(
        cnn, digits_dir, out, cluster.ClusterConfig(cluster_count=COUNT, batch_size=32)
    )
    return result, before


def test_each_clustered_kernel_keeps_at_most_cluster_count_values(clustered):
    result, _ = clustered
    assert result.clustered_layers == ["conv2", "dense1"]
    assert result.dense_layers == ["conv1", "logits"]  # keep_dense=auto, as pruning
    assert result.unique_values == {"conv2": COUNT, "dense1": COUNT}
    # the saved model holds the shared values, not only the report
    model = models.load_model(result.model_path)
    for name in ("conv2", "dense1"):
        assert np.unique(model.get_layer(name).kernel.numpy()).size <= COUNT
    assert np.unique(model.get_layer("logits").kernel.numpy()).size > 10 * COUNT
    assert 0.9 < result.clustered_param_fraction < 1.0


def test_clustered_model_keeps_accuracy_and_has_no_wrappers(clustered, digits_dir, cnn):
    result, _ = clustered
    assert_no_wrappers(result.model_path)
    names = [v.name for v in tf.saved_model.load(result.model_path).variables]
    assert not [n for n in names if "cluster" in n or "pulling_indices" in n], names
    # measured: baseline 0.980, clustered to 8 values after 2 epochs 0.978 (lr 1e-4)
    base = accuracy(cnn, "saved_model", digits_dir)
    assert accuracy(result.model_path, "saved_model", digits_dir) >= base - 0.02


def test_gzip_size_is_smaller_than_the_baseline(clustered, cnn):
    result, _ = clustered
    # the weights alone: measured 36,428 -> 7,640 bytes gzipped (4.8x)
    assert result.gzip_reduction > 3.0
    # the whole SavedModel, as evaluate measures it: measured about 53,900 -> 23,400 bytes
    assert fsutil.gzip_bytes(result.model_path) < 0.7 * fsutil.gzip_bytes(cnn)


def test_input_model_is_unchanged_by_clustering(clustered, cnn):
    _, before = clustered
    assert_unchanged(cnn, before)


def _nested_cnn() -> keras.Model:
    """A digits classifier whose conv layers sit in a nested backbone model."""
    keras.utils.set_random_seed(0)
    x = inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="inner1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="inner2")(x)
    backbone = keras.Model(inputs, keras.layers.Flatten()(x), name="backbone")
    outer = keras.Input((8, 8, 1), name="x")
    h = keras.layers.Dense(32, activation="relu", name="head")(backbone(outer / 16.0))
    return keras.Model(outer, keras.layers.Dense(10, activation="softmax", name="logits")(h))


def test_nested_model_is_flattened_and_clustered_through_apply(tmp_path, digits_dir):
    path = str(tmp_path / "nested")
    models.save_model(_nested_cnn(), path)
    outcome = cluster.apply(
        path,
        digits_dir,
        str(tmp_path / "out"),
        cluster.ClusterConfig(cluster_count=4, epochs=1, batch_size=64, keep_dense="logits"),
    )
    # inner1 (the first conv, kept by "auto") is clustered: keep_dense names only logits
    assert outcome.model["unique_values"] == {"inner1": 4, "inner2": 4, "head": 4}
    assert outcome.metrics["max_unique_values"] == 4
    assert outcome.metrics["gzip_reduction"] == outcome.model["gzip_reduction"] > 3.0
    assert outcome.model["cluster_count"] == 4 and outcome.model["params"] > 0
    saved = models.load_model(str(tmp_path / "out"))
    assert not any(isinstance(la, keras.Model) for la in saved.layers)  # flattened
    assert np.unique(saved.get_layer("inner2").kernel.numpy()).size <= 4


@pytest.mark.slow
def test_cluster_preserving_qat_keeps_the_shared_values_in_int8(clustered, digits_dir, tmp_path):
    result, _ = clustered
    res = qat.qat_model(
        result.model_path,
        digits_dir,
        str(tmp_path / "cqat.tflite"),
        qat.QatConfig(preserve_clusters=True, epochs=2, batch_size=32),
    )
    interp = tf.lite.Interpreter(model_path=res.path)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    weights = {}
    for op in interp._get_ops_details():
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
            tensor = tensors[op["inputs"][1]]
            weights[tuple(tensor["shape"])] = interp.get_tensor(tensor["index"])
    # dense1 (32 x 256): one int8 scale, so at most COUNT int8 values (plain QAT: 34)
    assert np.unique(weights[(32, 256)]).size <= COUNT
    # conv2 (16 x 3 x 3 x 8): a scale per output channel, at most COUNT values in each
    conv2 = weights[(16, 3, 3, 8)]
    assert max(np.unique(conv2[c]).size for c in range(16)) <= COUNT
    assert accuracy(res.path, "tflite", digits_dir) >= 0.9


def test_registry_declares_the_variants_off_by_default():
    from tfopt.compression import techniques  # noqa: F401 - registers every technique

    assert registry.names()[-3:] == ("clustered", "clustered_int8", "cqat_int8")
    assert registry.get("clustered").switch == "enable_clustering"
    assert registry.get("clustered_int8").settings == {"mode": "int8"}
    assert registry.get("cqat_int8").settings == {"preserve_clusters": True}
    assert registry.lineage("cqat_int8") == ("cqat_int8", "clustered", "baseline")
    assert not any(registry.on_by_default(n) for n in registry.names()[-3:])
    assert registry.pipeline_settings()["cluster_count"].default == 16
    assert registry.get_technique("cluster").plan is cluster.clusterability


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"cluster_count": 1}, r"ClusterConfig.cluster_count=1 is not allowed: .*\[2, 1024\]"),
        ({"cluster_count": 2000}, r"ClusterConfig.cluster_count=2000"),
        ({"centroids_init": "magic"}, r"ClusterConfig.centroids_init='magic'"),
        ({"epochs": -1}, r"ClusterConfig.epochs=-1"),
        ({"learning_rate": 0.0}, r"ClusterConfig.learning_rate=0.0"),
    ],
)
def test_bad_config_is_refused(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        cluster.ClusterConfig(**kwargs)


def test_bad_layers_fail_before_any_training(tmp_path, digits_dir, cnn):
    out = tmp_path / "o"
    with pytest.raises(ConfigError, match="ClusterConfig.keep_dense names layer 'nope'"):
        cluster.cluster_model(cnn, digits_dir, str(out), cluster.ClusterConfig(keep_dense="nope"))
    everything = cluster.ClusterConfig(keep_dense=("conv1", "conv2", "dense1", "logits"))
    with pytest.raises(ModelError, match="no layer to cluster"):
        cluster.cluster_model(cnn, digits_dir, str(out), everything)
    assert not out.exists()
    answers = cluster.clusterability(models.load_model(cnn), everything)
    assert answers["conv2"] == (False, "kept dense (keep_dense=conv1,conv2,dense1,logits)")
    assert answers["flatten"][1].startswith("no kernel")
