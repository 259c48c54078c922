"""The architecture of a built-in model (:class:`ModelConfig`) and the families it names.

Its own module so that the model builders (:mod:`tfopt.training.models`) and the
``tf_keras.applications`` families (:mod:`tfopt.training.applications`) both import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from tfopt.checks import check_choice, check_float, check_int
from tfopt.errors import ConfigError

BUILTIN_ARCHITECTURES = ("mlp", "cnn")
# tf_keras.applications families (tfopt.training.applications), built with weights=None
APPLICATION_ARCHITECTURES = ("mobilenet_v2", "mobilenet_v3_small", "resnet50", "efficientnet_b0")
ARCHITECTURES = BUILTIN_ARCHITECTURES + APPLICATION_ARCHITECTURES
WIDTH_ARCHITECTURES = ("mobilenet_v2", "mobilenet_v3_small")  # the ones ``alpha`` applies to


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a built-in model.

    Attributes:
        arch: ``mlp`` (dense layers), ``cnn`` (conv blocks, then a dense head), or a
            ``tf_keras.applications`` family: ``mobilenet_v2``, ``mobilenet_v3_small``,
            ``resnet50``, ``efficientnet_b0`` (images only).
        width: units of the first dense layer / filters of the first conv layer.
        depth: number of hidden dense layers (mlp) or conv layers (cnn).
        dropout: dropout rate before the output layer.
        alpha: width multiplier of ``mobilenet_v2`` / ``mobilenet_v3_small`` (1.0 elsewhere);
            ``width`` and ``depth`` apply to ``mlp`` / ``cnn`` only.
        weights_uri: a weights file (local or ``gs://``) loaded into the built model: a
            Keras ``.h5`` (matched by layer name, e.g. a family's ImageNet ``no_top``
            file) or a TensorFlow checkpoint prefix; "" = random initialization.
    """

    arch: str = "cnn"
    width: int = 32
    depth: int = 2
    dropout: float = 0.1
    alpha: float = 1.0
    weights_uri: str = ""

    def __post_init__(self):
        check_choice("ModelConfig", "arch", self.arch, ARCHITECTURES)
        check_int("ModelConfig", "width", self.width, 1, 8192)
        check_int("ModelConfig", "depth", self.depth, 1, 16)
        check_float("ModelConfig", "dropout", self.dropout, 0.0, 1.0, high_open=True)
        check_float("ModelConfig", "alpha", self.alpha, 0.0, 4.0, low_open=True)
        if self.alpha != 1.0 and self.arch not in WIDTH_ARCHITECTURES:
            raise ConfigError(
                f"ModelConfig.alpha={self.alpha} is not allowed for arch {self.arch!r}: "
                f"only {', '.join(WIDTH_ARCHITECTURES)} have a width multiplier (use 1.0)"
            )
        if not isinstance(self.weights_uri, str) or self.weights_uri != self.weights_uri.strip():
            raise ConfigError(
                f"ModelConfig.weights_uri={self.weights_uri!r} is not allowed: expected a "
                "path or gs:// URI without surrounding spaces, or ''"
            )
