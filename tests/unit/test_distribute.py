import json

import pytest

from tfopt import distribute
from tfopt.errors import ConfigError


def tf_config(cluster, task_type, index):
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def test_empty_tf_config_is_a_single_chief_worker():
    spec = distribute.parse_tf_config("")
    assert (spec.num_workers, spec.is_chief) == (1, True)


def test_chief_and_workers_counted_and_only_chief_writes():
    cluster = {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2", "127.0.0.1:3"]}
    chief = distribute.parse_tf_config(tf_config(cluster, "chief", 0))
    worker0 = distribute.parse_tf_config(tf_config(cluster, "worker", 0))
    assert chief.num_workers == 3
    assert chief.is_chief and not worker0.is_chief


def test_without_chief_worker_zero_writes():
    cluster = {"worker": ["127.0.0.1:2", "127.0.0.1:3"]}
    assert distribute.parse_tf_config(tf_config(cluster, "worker", 0)).is_chief
    assert not distribute.parse_tf_config(tf_config(cluster, "worker", 1)).is_chief


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"task": {}}', "'cluster' object"),
        (tf_config({"master": ["h:1"]}, "master", 0), "unknown task type 'master'"),
        (tf_config({"worker": ["nohostport"]}, "worker", 0), "host:port"),
        (tf_config({"worker": ["h:1"]}, "chief", 0), "task.type='chief'"),
        (tf_config({"worker": ["h:1"]}, "worker", 3), "task.index=3 is out of range"),
        (tf_config({"worker": ["h:1"], "ps": ["h:2"]}, "worker", 0), "parameter servers"),
    ],
)
def test_malformed_tf_config_is_rejected(raw, message):
    with pytest.raises(ConfigError, match=message):
        distribute.parse_tf_config(raw)
