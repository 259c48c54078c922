"""Train-config component and ``_util.train_config``: the flat pipeline parameters become one
mapping that every train component turns back into the same ``TrainConfig``."""

import pytest
from google.protobuf import json_format, struct_pb2

from tfopt.components import _util
from tfopt.components.train_config import train_config
from tfopt.errors import ConfigError
from tfopt.training import models
from tfopt.training import train as train_lib

SETTINGS = dict(
    arch="mlp",
    width=16,
    depth=3,
    dropout=0.25,
    alpha=1.0,
    weights_uri="",
    optimizer="sgd",
    learning_rate=1,
    scale_learning_rate=True,
    epochs=7,
    batch_size=32,
    early_stopping_patience=0,
    seed=3,
    precision="mixed_bfloat16",
    xla=True,
    augment="flip,crop=3",
    module_file="gs://b/my_model.py",
)
EXPECTED = train_lib.TrainConfig(
    model=models.ModelConfig(arch="mlp", width=16, depth=3, dropout=0.25),
    optimizer="sgd",
    learning_rate=1.0,
    scale_learning_rate=True,
    epochs=7,
    batch_size=32,
    early_stopping_patience=0,
    seed=3,
    precision="mixed_bfloat16",
    xla=True,
    augment="flip,crop=3",
    module_file="gs://b/my_model.py",
)


def through_struct(mapping: dict) -> dict:
    """What a dict parameter looks like after KFP passes it (a protobuf Struct)."""
    struct = struct_pb2.Struct()
    struct.update(mapping)
    return json_format.MessageToDict(struct)


def test_the_component_returns_every_setting_and_the_train_side_rebuilds_the_config():
    mapping = train_config.python_func(**SETTINGS)
    assert mapping == SETTINGS and list(mapping) == list(_util.TRAIN_SETTINGS)
    crossed = through_struct(mapping)
    assert crossed["epochs"] == 7.0 and isinstance(crossed["epochs"], float)  # Struct numbers
    config = _util.train_config(None, crossed)
    assert config == EXPECTED
    assert isinstance(config.epochs, int) and isinstance(config.learning_rate, float)
    assert _util.train_config(None, mapping) == EXPECTED  # kfp.local keeps JSON's ints


def test_absent_names_keep_the_defaults_and_flat_settings_override():
    assert _util.train_config(None, {}) == train_lib.TrainConfig()
    assert _util.train_config(None, None) == train_lib.TrainConfig()
    defaults = train_config.python_func()
    assert _util.train_config(None, through_struct(defaults)) == train_lib.TrainConfig()
    config = _util.train_config(None, {"epochs": 3}, epochs=4, profile_batches="2,3")
    assert (config.epochs, config.profile_batches) == (4, "2,3")


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ({"epochz": 3}, r"unknown name\(s\) epochz; allowed: .*arch.*epochs"),
        ({"epochs": 2.5}, "TrainConfig.epochs=2.5"),
        ({"width": "8"}, "ModelConfig.width='8'"),
        ({"arch": "resnet"}, "ModelConfig.arch='resnet'"),
        ([("epochs", 3)], "train_config=.* expected a mapping"),
    ],
)
def test_bad_mappings_are_named(mapping, needle):
    with pytest.raises(ConfigError, match=needle):
        _util.train_config(None, mapping)
