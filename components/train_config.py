"""Train-config component: the pipeline's flat training parameters -> one ``train_config`` dict.

Every train component (in-cluster, TFJob, Vertex and any new target) takes that one
mapping, checked there by ``TrainConfig`` (``_util.train_config``), instead of its own
copy of these parameters. A step is needed because KFP cannot build the dict in the
pipeline: a dict literal of pipeline channels reaches the component as strings
(``"3.0"``), and kfp.local does not resolve one inside a sub-pipeline at all.
The names are ``_util.TRAIN_SETTINGS`` (checked by ``tests/compile/test_variant_registry.py``).
"""

from kfp import dsl

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.training.model_config import ModelConfig
from tfopt.training.train import TrainConfig


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(ModelConfig, TrainConfig)
def train_config(
    arch: str = "cnn",
    width: int = 32,
    depth: int = 2,
    dropout: float = 0.1,
    alpha: float = 1.0,
    weights_uri: str = "",
    optimizer: str = "adam",
    learning_rate: float = 0.001,
    scale_learning_rate: bool = False,
    epochs: int = 20,
    batch_size: int = 64,
    early_stopping_patience: int = 3,
    seed: int = 42,
    precision: str = "float32",
    xla: bool = False,
    augment: str = "",
    module_file: str = "",
) -> dict:
    """Return the training settings as one mapping (no TensorFlow import: a cheap step)."""
    return dict(locals())
