"""``tfopt_model.json``: where a SavedModel came from (imported model, module file); and
``tfopt_data.json``: the data it was trained on (schema and statistics).

Written into the SavedModel directory by ``training.models.save_model`` (TF Serving ignores
the file); read by compression, evaluation and the components. In the shared root, without
TensorFlow, because evaluation may not import training.
"""

from __future__ import annotations

import os

from tfopt import fsutil

MODEL_INFO_FILE = "tfopt_model.json"
# beside it: the training data's identity, schema and statistics (tfopt.data.statistics)
DATA_FILE = "tfopt_data.json"


def read_model_info(path: str) -> dict:
    """The ``tfopt_model.json`` of a SavedModel directory (``{}`` when it has none)."""
    info_path = os.path.join(path, MODEL_INFO_FILE)
    return fsutil.read_json(info_path) if fsutil.exists(info_path) else {}


def read_model_data(path: str) -> dict | None:
    """The ``tfopt_data.json`` of a SavedModel directory (None when it has none: a model
    written before tfopt recorded its data, or imported).

    Raises:
        ValueError: the file is not JSON.
    """
    data_path = os.path.join(path, DATA_FILE)
    return fsutil.read_json(data_path) if fsutil.exists(data_path) else None
