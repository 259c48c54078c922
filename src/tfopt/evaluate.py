"""Evaluate a candidate model (SavedModel or TFLite) on the test split.

Accuracy and loss over the whole test split; size raw and gzipped; batch-1
latency percentiles after a warm-up. SavedModels run through their concrete
``serving_default`` function (no ``model.predict`` overhead), TFLite models
through LiteRT / ``tf.lite.Interpreter``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from tfopt import data as data_lib
from tfopt import fsutil, litert
from tfopt._keras import tf
from tfopt.config import check_choice, check_int
from tfopt.errors import ModelError

log = logging.getLogger(__name__)

FORMATS = ("saved_model", "tflite")


@dataclass(frozen=True)
class EvalConfig:
    """How to measure.

    Attributes:
        latency_warmup: untimed batch-1 calls before timing.
        latency_iterations: timed batch-1 calls (percentiles over these).
        batch_size: batch size for accuracy.
        num_threads: TFLite interpreter threads (0 = runtime default).
    """

    latency_warmup: int = 20
    latency_iterations: int = 200
    batch_size: int = 256
    num_threads: int = 1

    def __post_init__(self):
        check_int("EvalConfig", "latency_warmup", self.latency_warmup, 0, 100_000)
        check_int("EvalConfig", "latency_iterations", self.latency_iterations, 1, 1_000_000)
        check_int("EvalConfig", "batch_size", self.batch_size, 1, 1 << 16)
        check_int("EvalConfig", "num_threads", self.num_threads, 0, 256)


class Predictor:
    """A uniform ``predict(x) -> probabilities`` over both formats."""

    def __init__(self, path: str, fmt: str, num_threads: int = 1):
        check_choice("Predictor", "fmt", fmt, FORMATS)
        self.path, self.format = path, fmt
        if fmt == "tflite":
            if not fsutil.exists(path) or os.path.isdir(path):
                raise ModelError(f"{path}: TFLite model file not found")
            try:
                self._tflite = litert.TFLiteModel(path, num_threads=num_threads or None)
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"{path}: cannot load the TFLite model ({exc})") from None
        else:
            if not fsutil.exists(os.path.join(path, "saved_model.pb")):
                raise ModelError(f"{path}: not a SavedModel directory (no saved_model.pb)")
            loaded = tf.saved_model.load(path)
            if "serving_default" not in loaded.signatures:
                raise ModelError(f"{path}: SavedModel has no serving_default signature")
            self._loaded = loaded  # keep the variables alive
            self._fn = loaded.signatures["serving_default"]
            self._input = next(iter(self._fn.structured_input_signature[1]))

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        if self.format == "tflite":
            return self._tflite.predict(x, batch_size)
        outs = []
        for i in range(0, len(x), batch_size):
            out = self._fn(**{self._input: tf.constant(x[i:i + batch_size])})
            outs.append(next(iter(out.values())).numpy())
        return np.concatenate(outs)

    def single_call(self, x1: np.ndarray):
        """A batch-1 call with the input already in the model's form (for timing)."""
        if self.format == "tflite":
            xq = self._tflite.prepare(x1)
            return lambda: self._tflite.invoke_prepared(xq)
        t = tf.constant(x1)
        return lambda: self._fn(**{self._input: t})


def latency_ms(predictor: Predictor, x: np.ndarray, config: EvalConfig) -> np.ndarray:
    """Batch-1 latencies in milliseconds, cycling through the examples in ``x``."""
    calls = [predictor.single_call(x[i:i + 1]) for i in range(min(len(x), 64))]
    for i in range(config.latency_warmup):
        calls[i % len(calls)]()
    times = np.empty(config.latency_iterations)
    for i in range(config.latency_iterations):
        call = calls[i % len(calls)]
        start = time.perf_counter()
        call()
        times[i] = (time.perf_counter() - start) * 1000.0
    return times


def evaluate_model(path: str, fmt: str, dataset_dir: str, config: EvalConfig = EvalConfig(),
                   name: str = "") -> dict:
    """Accuracy, loss, sizes and batch-1 latency of one candidate on the test split."""
    info = data_lib.load_info(dataset_dir)
    x, y = data_lib.load_arrays(info, "test")
    predictor = Predictor(path, fmt, config.num_threads)
    probs = predictor.predict(x, config.batch_size)
    if probs.shape != (len(y), info.num_classes):
        raise ModelError(f"{path}: predictions have shape {probs.shape}; expected "
                         f"{(len(y), info.num_classes)}")
    if not np.all(np.isfinite(probs)):
        raise ModelError(f"{path}: the model outputs NaN or infinity")
    pred = probs.argmax(axis=1)
    loss = float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0))))
    lat = latency_ms(predictor, x, config)
    return {
        "name": name or os.path.basename(path.rstrip("/")),
        "format": fmt,
        "path": path,
        "accuracy": float(np.mean(pred == y)),
        "loss": loss,
        "size_bytes": fsutil.size_bytes(path),
        "gzip_bytes": fsutil.gzip_bytes(path),
        "latency_ms_p50": float(np.percentile(lat, 50)),
        "latency_ms_p99": float(np.percentile(lat, 99)),
        "latency_iterations": config.latency_iterations,
        "num_threads": config.num_threads,
        "runtime": litert.runtime_name() if fmt == "tflite" else "tf.saved_model",
        "num_test": int(len(y)),
    }


@dataclass(frozen=True)
class Candidate:
    """A model to evaluate: name, path, format and the metadata its step wrote."""

    name: str
    path: str
    format: str
    metadata: dict


def evaluate_candidates(candidates: list[Candidate], dataset_dir: str,
                        config: EvalConfig = EvalConfig()) -> list[dict]:
    """Evaluate every candidate; one that cannot be loaded or run gets an ``error``."""
    if not candidates:
        raise ModelError("no candidate to evaluate")
    records = []
    for cand in candidates:
        try:
            record = evaluate_model(cand.path, cand.format, dataset_dir, config, cand.name)
        except Exception as exc:  # a broken candidate is rejected, not fatal
            log.warning("candidate %s failed: %s", cand.name, exc)
            record = {"name": cand.name, "format": cand.format, "path": cand.path,
                      "error": f"{type(exc).__name__}: {exc}"}
        for key in ("params", "sparsity", "base", "notes", "quantization"):
            if key in cand.metadata:
                record.setdefault(key, cand.metadata[key])
        records.append(record)
    return records
