"""``TrainConfig.augment``: the pipeline's augmentation spec becomes ``InputConfig`` fields."""

import pytest

from tfopt.data import input_pipeline
from tfopt.errors import ConfigError
from tfopt.training import train as train_lib


def test_the_spec_maps_to_input_config_fields_with_defaults_for_bare_items():
    assert input_pipeline.parse_augment("") == {}
    fields = input_pipeline.parse_augment(" flip, crop=4 ,brightness")
    assert fields == {"augment_flip": True, "augment_crop": 4, "augment_brightness": 0.1}
    config = input_pipeline.InputConfig(**input_pipeline.parse_augment("crop,brightness=0.3"))
    assert (config.augment_flip, config.augment_crop, config.augment_brightness) == (
        False,
        input_pipeline.DEFAULT_CROP,
        0.3,
    )


@pytest.mark.parametrize(
    "spec", ["rotate", "flip=1", "crop=0", "crop=x", "brightness=2", "crop,crop=3", "crop="]
)
def test_a_bad_spec_fails_in_train_config_naming_the_item(spec):
    with pytest.raises(ConfigError, match=r"TrainConfig\.augment=.*item .*expected"):
        train_lib.TrainConfig(augment=spec)
