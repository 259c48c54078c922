"""Bad requests fail with clear errors before anything is submitted."""

import json
import logging

import pytest

from tfopt.errors import ConfigError
from tfopt.launch import tfjob, validate


def test_more_replicas_than_allowed():
    with pytest.raises(ConfigError, match=r"replicas=65 .* at most 64 for target 'tfjob'"):
        validate.TrainingRequest("tfjob", replicas=65)
    with pytest.raises(ConfigError, match=r"replicas=3 .* at most 2"):
        validate.TrainingRequest("vertex", replicas=3, max_replicas=2)
    with pytest.raises(ConfigError, match="trains in one pod"):
        validate.TrainingRequest("local", replicas=2)
    with pytest.raises(ConfigError, match="replicas=0"):
        validate.TrainingRequest("tfjob", replicas=0)


def test_kubeflow_is_the_old_name_of_tfjob_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="tfopt.launch.validate"):
        req = validate.TrainingRequest("kubeflow", 2)
    assert req.target == "tfjob"
    assert "training target 'kubeflow' is deprecated: use 'tfjob'" in caplog.text
    assert "kubeflow" not in validate.TARGETS
    config = tfjob.TFJobConfig(name="a", image="i", command=("x",), request=req)
    assert config.request.target == "tfjob"  # the TFJob launcher takes it
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tfopt.launch.validate"):
        validate.TrainingRequest("tfjob", 2)
    assert not caplog.records


def test_unknown_accelerator_and_target():
    with pytest.raises(
        ConfigError,
        match=r"accelerator_type='NVIDIA_TESLA_X1' is not known to "
        r"target 'vertex': expected one of .*NVIDIA_TESLA_T4",
    ):
        validate.TrainingRequest("vertex", 2, 1, "NVIDIA_TESLA_X1")
    with pytest.raises(ConfigError, match="not known to target 'tfjob'"):
        validate.TrainingRequest("tfjob", 2, 1, "nvidia-tesla-t4")
    with pytest.raises(ConfigError, match="target='gke'"):
        validate.TrainingRequest("gke")
    # TPUs are in aiplatform's enum but are not GPUs tfopt can train on.
    with pytest.raises(ConfigError, match="TPU_V3"):
        validate.TrainingRequest("vertex", 1, 1, "TPU_V3")
    # With no GPUs the accelerator type is not used, so it is not checked.
    assert validate.TrainingRequest("vertex", 2, 0, "anything").node_selector() == {}


def test_vertex_types_come_from_aiplatform_enum():
    from google.cloud.aiplatform_v1.types.accelerator_type import AcceleratorType

    names = validate.vertex_accelerator_types()
    assert "NVIDIA_L4" in names and "NVIDIA_TESLA_T4" in names
    assert all(n in AcceleratorType.__members__ for n in names)
    assert "ACCELERATOR_TYPE_UNSPECIFIED" not in names
    # Every GKE mapping names an accelerator Vertex AI also knows.
    assert set(validate.GKE_ACCELERATORS) <= set(AcceleratorType.__members__)


def test_node_selector_for_gpu_request():
    req = validate.TrainingRequest("tfjob", 4, 2, "NVIDIA_L4")
    assert req.node_selector() == {"cloud.google.com/gke-accelerator": "nvidia-l4"}


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("{not json", "not valid JSON"),
        ("", "TF_CONFIG is empty"),
        ('{"task": {}}', "'cluster' object"),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}',
            "task.type='chief' must name a task type",
        ),
        (
            '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}',
            "task.index=3 is out of range",
        ),
        ('{"cluster": {"worker": ["nohostport"]}, "task": {"type": "worker"}}', "host:port"),
        (
            '{"cluster": {"ps": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker"}}',
            "parameter servers",
        ),
    ],
)
def test_malformed_tf_config(raw, match):
    with pytest.raises(ConfigError, match=match):
        validate.check_tf_config(raw)


def test_good_tf_config():
    spec = validate.check_tf_config(
        {
            "cluster": {"chief": ["a:1"], "worker": ["b:2", "c:3"]},
            "task": {"type": "worker", "index": 1},
        }
    )
    assert (spec.num_workers, spec.task_type, spec.is_chief) == (3, "worker", False)
    assert validate.check_tf_config(
        json.dumps({"cluster": {"chief": ["a:1"]}, "task": {"type": "chief"}})
    ).is_chief


def test_shared_uri():
    assert validate.check_shared_uri("model_uri", "gs://b/m") == "gs://b/m"
    with pytest.raises(ConfigError, match="minio://"):
        validate.check_shared_uri("model_uri", "minio://mlpipeline/x")
