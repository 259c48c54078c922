"""SavedModel warmup: ``assets.extra/tf_serving_warmup_requests``.

TF Serving replays the ``PredictionLog`` records of this TFRecord file when it
loads a version, before the version takes traffic, so the first real request
does not pay for graph tracing and memory allocation. The records are built
from real test examples.
"""

from __future__ import annotations

import os

import numpy as np

from tfopt import fsutil
from tfopt.errors import DataError

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
SIGNATURE = "serving_default"
INPUT_NAME = "x"


def warmup_path(model_dir: str) -> str:
    return os.path.join(model_dir, WARMUP_DIR, WARMUP_FILE)


def examples_from_dataset(dataset_dir: str, split: str = "test", limit: int = 32) -> np.ndarray:
    """Up to ``limit`` real feature rows of one split (float32, [n, *feature_shape])."""
    from tfopt.data import input_pipeline, schema

    info = schema.load_info(dataset_dir)
    x, _ = input_pipeline.load_arrays(info, split, limit=limit)
    return np.asarray(x[:limit], dtype=np.float32)


def build_requests(
    examples: np.ndarray,
    model_name: str,
    batch_sizes: tuple[int, ...] = (1,),
    signature_name: str = SIGNATURE,
    input_name: str = INPUT_NAME,
) -> list:
    """``PredictRequest`` protos cycling through ``examples`` for each batch size."""
    from tensorflow_serving.apis import predict_pb2

    from tfopt._keras import tf

    examples = np.asarray(examples, dtype=np.float32)
    if examples.ndim < 2 or len(examples) == 0:
        raise DataError(
            f"warmup examples must be a non-empty batch [n, *feature_shape]; "
            f"got shape {examples.shape}"
        )
    requests = []
    for size in batch_sizes:
        for start in range(0, len(examples), size):
            batch = examples[start : start + size]
            if len(batch) < size:
                break
            req = predict_pb2.PredictRequest()
            req.model_spec.name = model_name
            req.model_spec.signature_name = signature_name
            req.inputs[input_name].CopyFrom(tf.make_tensor_proto(batch))
            requests.append(req)
    if not requests:
        raise DataError(f"warmup: {len(examples)} examples fill no batch of sizes {batch_sizes}")
    return requests


def write_warmup(
    model_dir: str,
    examples: np.ndarray,
    model_name: str,
    batch_sizes: tuple[int, ...] = (1,),
    num_records: int = 0,
) -> str:
    """Write the warmup file into ``model_dir`` (a staged copy, never the input model).

    Args:
        model_dir: SavedModel directory to add ``assets.extra/...`` to.
        examples: real feature rows, float32 ``[n, *feature_shape]``.
        model_name: ``model_spec.name`` of the recorded requests.
        batch_sizes: one request per full batch of each size.
        num_records: cap on the number of records (0 = no cap; TF Serving caps at 1000).

    Returns:
        The warmup file's path.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    from tfopt._keras import tf

    requests = build_requests(examples, model_name, batch_sizes)
    requests = requests[: num_records or 1000]
    path = warmup_path(model_dir)
    fsutil.makedirs(os.path.dirname(path))
    tmp = fsutil._tmp_sibling(path)
    try:
        with tf.io.TFRecordWriter(tmp) as writer:
            for req in requests:
                log = prediction_log_pb2.PredictionLog(
                    predict_log=prediction_log_pb2.PredictLog(request=req)
                )
                writer.write(log.SerializeToString())
        tf.io.gfile.rename(tmp, path, overwrite=True)
    finally:
        if fsutil.exists(tmp):
            fsutil.remove(tmp)
    return path


def read_warmup(model_dir: str) -> list:
    """The ``PredictRequest`` protos recorded in ``model_dir``'s warmup file ([] if none)."""
    from tensorflow_serving.apis import prediction_log_pb2

    from tfopt._keras import tf

    path = warmup_path(model_dir)
    if not fsutil.exists(path):
        return []
    requests = []
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
        log = prediction_log_pb2.PredictionLog.FromString(raw)
        if log.WhichOneof("log_type") != "predict_log":
            raise DataError(
                f"{path}: only predict_log warmup records are supported, got "
                f"{log.WhichOneof('log_type')}"
            )
        requests.append(log.predict_log.request)
    return requests
