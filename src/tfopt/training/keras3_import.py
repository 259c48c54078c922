"""The import step's Keras 3 path (``model_uri`` = a ``.keras`` / ``.h5`` saved by Keras 3).

The file is loaded with Keras 3 (the module file's ``custom_objects``), checked against
the dataset, translated to tf_keras (``keras3.to_tf_keras``; the user's own layers through
the module file's ``tf_keras_objects``) and the two models compared on the dataset's
examples: every technique then runs on the tf_keras model. A functional model with a layer
that has no tf_keras equivalent is exported with Keras 3's ``model.export`` and imported as
a plain SavedModel: the post-training variants and distillation (as teacher) run, and the
techniques that train weights refuse it naming the layer. A subclassed model is an error
that says what can apply.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tfopt._keras import tf
from tfopt.errors import ModelError
from tfopt.training import keras3

log = logging.getLogger(__name__)

FORMAT = "keras3_file"


@dataclass
class Keras3Source:
    """A loaded Keras 3 model and what its translation needs."""

    model: Any
    version: str
    objects: dict  # name -> tf_keras class, the module file's tf_keras_objects
    load_seconds: float


def load(uri: str, local: str, version: str, custom: dict, objects: dict) -> Keras3Source:
    start = time.perf_counter()
    model = keras3.load(uri, local, custom, version)
    if not keras3.is_graph(model):
        raise keras3.subclassed_error(f"model_uri {uri}", model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(
            f"model_uri {uri}: the model has {len(model.inputs)} inputs and "
            f"{len(model.outputs)} outputs; tfopt imports a classifier with one of each"
        )
    return Keras3Source(model, version, dict(objects), time.perf_counter() - start)


def shapes(source: Keras3Source) -> tuple[tuple, tuple]:
    """The Keras 3 model's input shape (no batch) and output shape."""
    return tuple(source.model.inputs[0].shape[1:]), tuple(source.model.outputs[0].shape)


def plain_reason(entry: dict) -> str:
    u = entry["untranslatable"]
    return (
        f"the Keras 3 model's layer {u['layer']!r} ({u['class']}) has no tf_keras equivalent "
        f"({u['why']}); it was imported as a plain SavedModel (Keras 3's export), which the "
        "techniques that train weights cannot change"
    )


def translate(uri: str, source: Keras3Source, x: np.ndarray, scratch: str):
    """The tf_keras model (or, for a layer with no equivalent, the loaded Keras 3 export)
    and the ``keras`` origin entry; ``x``: dataset examples in the model's input range."""
    start = time.perf_counter()
    x = x[: keras3.CHECK_EXAMPLES].astype(np.float32)
    try:
        model = keras3.to_tf_keras(source.model, source.objects, where=f"model_uri {uri}")
    except keras3.NoEquivalentError as exc:
        export_dir = os.path.join(scratch, "keras3_export")
        source.model.export(export_dir, verbose=False)
        entry = keras3.origin(
            source.version,
            "file",
            False,
            untranslatable={"layer": exc.layer, "class": exc.cls, "why": exc.why},
        )
        log.warning("model_uri %s: %s", uri, plain_reason(entry))
        return tf.saved_model.load(export_dir), entry
    diff = keras3.check_equal(source.model, model, x, f"model_uri {uri}")
    entry = keras3.origin(
        source.version,
        "file",
        True,
        max_abs_diff=diff,
        checked_examples=len(x),
        layers=len(model.layers),
        seconds=round(source.load_seconds + time.perf_counter() - start, 2),
    )
    return model, entry
