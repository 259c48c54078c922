"""models.config, batching and monitoring files."""

import pytest
from google.protobuf import text_format

from tfopt.deploy.serving import config as sc
from tfopt.errors import ConfigError


def test_model_config_round_trip_with_labels(tmp_path):
    entry = sc.ModelEntry(
        "digits",
        "/models/digits",
        policy="specific",
        versions=(3, 4),
        labels=(("stable", 3), ("canary", 4)),
    )
    text = sc.format_model_config([entry])
    from tensorflow_serving.config import model_server_config_pb2

    proto = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    cfg = proto.model_config_list.config[0]
    assert list(cfg.model_version_policy.specific.versions) == [3, 4]
    assert dict(cfg.version_labels) == {"stable": 3, "canary": 4}
    assert cfg.model_platform == "tensorflow"
    path = str(tmp_path / "models.config")
    sc.write_model_config(path, [entry])
    assert sc.read_model_config(path) == [entry]
    other = sc.ModelEntry("other", "/models/other", num_versions=2)
    sc.upsert_entry(path, other)
    moved = sc.ModelEntry(
        "digits", "/models/digits", policy="specific", versions=(4,), labels=(("stable", 4),)
    )
    assert sc.upsert_entry(path, moved) == [moved, other]
    assert sc.read_model_config(str(tmp_path / "missing.config")) == []


def test_policies_choose_versions():
    on_disk = [1, 2, 5, 9]
    assert sc.ModelEntry("m", "/b").aspired(on_disk) == [9]
    assert sc.ModelEntry("m", "/b", num_versions=2).aspired(on_disk) == [5, 9]
    assert sc.ModelEntry("m", "/b", policy="all").aspired(on_disk) == on_disk
    assert sc.ModelEntry("m", "/b", policy="specific", versions=(2, 3)).aspired(on_disk) == [2]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"policy": "newest"}, "policy"),
        ({"policy": "specific"}, "at least one version"),
        ({"policy": "specific", "versions": (1,), "labels": (("stable", 2),)}, "only labels"),
        ({"num_versions": 0}, "num_versions"),
        ({"labels": (("stable", 0),)}, "labels"),
    ],
)
def test_model_entry_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        sc.ModelEntry("m", "/b", **kwargs)


def test_bad_config_text_is_a_config_error():
    with pytest.raises(ConfigError, match="ModelServerConfig"):
        sc.parse_model_config("model_config_list { nonsense: 1 }")


def test_batching_and_monitoring_files(tmp_path):
    text = sc.format_batching_config(
        sc.BatchingConfig(max_batch_size=16, allowed_batch_sizes=(4, 8, 16))
    )
    assert "max_batch_size { value: 16 }" in text
    assert "batch_timeout_micros { value: 1000 }" in text
    assert text.count("allowed_batch_sizes:") == 3
    with pytest.raises(ConfigError, match="allowed_batch_sizes"):
        sc.BatchingConfig(max_batch_size=16, allowed_batch_sizes=(8, 4))
    mon = sc.format_monitoring_config()
    assert "enable: true" in mon and '"/monitoring/prometheus/metrics"' in mon
    with pytest.raises(ConfigError):
        sc.format_monitoring_config("metrics")
    files = sc.write_server_configs(str(tmp_path), [sc.ModelEntry("m", "/models/m")])
    assert sorted(files) == sorted([sc.MODELS_CONFIG, sc.BATCHING_CONFIG, sc.MONITORING_CONFIG])
    assert sc.read_model_config(files[sc.MODELS_CONFIG])[0].name == "m"
