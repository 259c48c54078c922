"""The one place that selects Keras 2 (tf_keras) before TensorFlow is imported.

tensorflow-model-optimization only works with Keras 2, so every model in tfopt
is built with ``tf_keras``. Import ``keras`` and ``tf`` from here, never
``tensorflow.keras``.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
import tf_keras as keras

__all__ = ["keras", "tf"]
