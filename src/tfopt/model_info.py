"""``tfopt_model.json``: where a SavedModel came from (imported model, module file).

Written into the SavedModel directory by ``training.models.save_model`` (TF Serving ignores
the file); read by compression, evaluation and the components. In the shared root, without
TensorFlow, because evaluation may not import training.
"""

from __future__ import annotations

import os

from tfopt import fsutil

MODEL_INFO_FILE = "tfopt_model.json"


def read_model_info(path: str) -> dict:
    """The ``tfopt_model.json`` of a SavedModel directory (``{}`` when it has none)."""
    info_path = os.path.join(path, MODEL_INFO_FILE)
    return fsutil.read_json(info_path) if fsutil.exists(info_path) else {}
