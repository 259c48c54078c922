"""Evaluate candidate models (SavedModel or TFLite) on the test split.

For each candidate: accuracy, loss, macro and per-class precision / recall /
F1 and the confusion matrix (the test split is streamed in batches, so memory
does not grow with its size); parameters and sparsity (read from the saved
weights, falling back to the metadata the producing step wrote); file size
raw and gzipped; batch-1 latency p50 / p95 / p99 after a warm-up and batch-N
throughput; and the peak memory of the inference process.

SavedModels run through their concrete ``serving_default`` function (no
``model.predict`` overhead), TFLite models through LiteRT /
``tf.lite.Interpreter`` (see :mod:`tfopt.evaluation.runtime`) with the thread count
recorded.

Peak memory: every candidate is evaluated in this process, one after the
other, and the kernel's peak-RSS counter (``VmHWM``) is reset before each one
(``/proc/self/clear_refs``), so ``peak_rss_bytes`` is the high-water mark of
the process while that candidate was loaded and run and ``memory_bytes`` is
what it added on top of the resident size before it was loaded. A
subprocess per candidate would isolate better but pays TensorFlow's start-up
(seconds) per candidate, which alone would break the evaluation's cost
budget; where ``clear_refs`` is not writable a sampling thread (psutil,
every 2 ms) stands in.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np

from tfopt import fsutil, model_info, registry
from tfopt._keras import tf
from tfopt.checks import check_float, check_int
from tfopt.data import input_pipeline, schema
from tfopt.errors import DataError, ModelError
from tfopt.evaluation import flops, noise
from tfopt.evaluation import runtime as runtime_lib
from tfopt.evaluation.runtime import Predictor

log = logging.getLogger(__name__)

_LATENCY_EXAMPLES = 64  # distinct batch-1 inputs cycled through while timing
_MAX_LATENCY_CALLS = 100_000


@dataclass(frozen=True)
class EvalConfig:
    """How to measure.

    Attributes:
        latency_warmup: untimed batch-1 calls before timing.
        latency_iterations: timed batch-1 calls at least (percentiles over these).
        latency_min_seconds: keep timing until this much time was spent too (a fast
            model gets more calls, so one scheduler hiccup moves its p50 less); the
            count actually timed is recorded as ``latency_iterations``.
        batch_size: batch size for streaming the test split (accuracy, loss, confusion).
        num_threads: TFLite interpreter threads (0 = runtime default). SavedModels
            use TensorFlow's intra-op setting, recorded as ``tf_intra_op_threads``.
        throughput_batch_size: batch size N of the throughput measurement.
        throughput_iterations: timed batch-N calls (after 2 untimed ones).
    """

    latency_warmup: int = 20
    latency_iterations: int = 200
    latency_min_seconds: float = 0.2
    batch_size: int = 256
    num_threads: int = 1
    throughput_batch_size: int = 64
    throughput_iterations: int = 20

    def __post_init__(self):
        check_int("EvalConfig", "latency_warmup", self.latency_warmup, 0, 100_000)
        check_int("EvalConfig", "latency_iterations", self.latency_iterations, 1, 1_000_000)
        check_float("EvalConfig", "latency_min_seconds", self.latency_min_seconds, 0.0, 60.0)
        check_int("EvalConfig", "batch_size", self.batch_size, 1, 1 << 16)
        check_int("EvalConfig", "num_threads", self.num_threads, 0, 256)
        check_int("EvalConfig", "throughput_batch_size", self.throughput_batch_size, 1, 1 << 16)
        check_int("EvalConfig", "throughput_iterations", self.throughput_iterations, 1, 100_000)


def weight_stats(weights: list[np.ndarray]) -> tuple[int, float]:
    """``(params, sparsity)``: all weight elements, and the zero fraction of the kernels."""
    params = int(sum(w.size for w in weights))
    kernels = [w for w in weights if w.ndim >= 2]
    total = sum(w.size for w in kernels)
    zeros = sum(int(np.count_nonzero(w == 0)) for w in kernels)
    return params, (zeros / total if total else 0.0)


def latency_ms(predictor: Predictor, x: np.ndarray, config: EvalConfig) -> np.ndarray:
    """Batch-1 latencies in milliseconds, cycling through the examples in ``x``."""
    calls = [predictor.single_call(x[i : i + 1]) for i in range(min(len(x), _LATENCY_EXAMPLES))]
    for i in range(config.latency_warmup):
        calls[i % len(calls)]()
    times = []
    deadline = time.perf_counter() + config.latency_min_seconds
    i = 0
    while i < config.latency_iterations or (
        time.perf_counter() < deadline and i < _MAX_LATENCY_CALLS
    ):
        call = calls[i % len(calls)]
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000.0)
        i += 1
    return np.asarray(times)


def throughput_per_s(predictor: Predictor, x: np.ndarray, config: EvalConfig) -> float:
    """Examples per second at batch size ``config.throughput_batch_size``."""
    n = config.throughput_batch_size
    batch = np.resize(x, (n, *x.shape[1:])) if len(x) < n else x[:n]
    call = predictor.single_call(batch)
    for _ in range(2):
        call()
    start = time.perf_counter()
    for _ in range(config.throughput_iterations):
        call()
    return n * config.throughput_iterations / (time.perf_counter() - start)


def classification_metrics(confusion: np.ndarray) -> dict:
    """Accuracy and macro / per-class precision, recall, F1 from a confusion matrix.

    Rows are true classes, columns predictions; a class never predicted (or
    absent from the split) scores 0 where its denominator is 0.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "accuracy": float(tp.sum() / cm.sum()) if cm.sum() else 0.0,
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
        "per_class": {
            "precision": precision.round(6).tolist(),
            "recall": recall.round(6).tolist(),
            "f1": f1.round(6).tolist(),
            "support": actual.astype(int).tolist(),
        },
    }


class PeakMemory:
    """Peak resident memory of this process while the ``with`` block runs.

    Resets the kernel's high-water mark (``VmHWM``) through
    ``/proc/self/clear_refs`` when allowed, else samples RSS with psutil.
    """

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self.method = ""
        self.before = self.peak = 0

    def __enter__(self):
        gc.collect()
        self.before = _rss_bytes()
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.method = "VmHWM"
        except OSError:
            self.method = "psutil-sampling"
            self._stop = threading.Event()
            self._peak = self.before
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc):
        if self.method == "VmHWM":
            self.peak = _proc_status_kb("VmHWM") * 1024
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._peak, _rss_bytes())
        return False

    @property
    def added(self) -> int:
        return max(self.peak - self.before, 0)


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise OSError(f"{key} not in /proc/self/status")


def _rss_bytes() -> int:
    try:
        return _proc_status_kb("VmRSS") * 1024
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


def _test_sample(info, n: int) -> np.ndarray:
    x, _ = input_pipeline.load_arrays(info, "test", limit=n)
    return x


@dataclass(frozen=True)
class Outcomes:
    """A candidate's predicted classes on the test split, beside the labels (in order)."""

    labels: np.ndarray
    predicted: np.ndarray


def evaluate_model(
    path: str,
    fmt: str,
    dataset_dir: str,
    config: EvalConfig = EvalConfig(),
    name: str = "",
    sample: np.ndarray | None = None,
) -> dict:
    """Every metric of one candidate on the test split (see the module docstring).

    Args:
        path: SavedModel directory or ``.tflite`` file.
        fmt: ``saved_model`` or ``tflite``.
        dataset_dir: dataset artifact; its ``test`` split is streamed in batches.
        config: how to measure.
        name: variant name (default: the basename of ``path``).
        sample: the first test examples for timing (read here when None).
    """
    return _measure(path, fmt, dataset_dir, config, name, sample)[0]


def _measure(path, fmt, dataset_dir, config, name, sample) -> tuple[dict, Outcomes]:
    """``evaluate_model``'s record, and the test split's labels and predicted classes."""
    start = time.perf_counter()
    info = schema.load_info(dataset_dir)
    if sample is None:
        sample = _test_sample(info, max(_LATENCY_EXAMPLES, config.throughput_batch_size))
    classes = info.num_classes
    with PeakMemory() as memory:
        predictor = Predictor(path, fmt, config.num_threads)
        predictor.check_fits(info.feature_shape)
        confusion = np.zeros((classes, classes), dtype=np.int64)
        loss_sum, count = 0.0, 0
        labels, predicted = [], []
        for x, y in input_pipeline.iter_arrays(info, "test", config.batch_size):
            probs = predictor.predict(x, config.batch_size)
            if probs.shape != (len(y), classes):
                raise ModelError(
                    f"{path}: predictions have shape {probs.shape}; expected {(len(y), classes)}"
                )
            if not np.all(np.isfinite(probs)):
                raise ModelError(f"{path}: the model outputs NaN or infinity")
            labels.append(y)
            predicted.append(probs.argmax(axis=1))
            confusion += np.bincount(
                y * classes + predicted[-1], minlength=classes * classes
            ).reshape(classes, classes)
            loss_sum += float(-np.sum(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1.0))))
            count += len(y)
        if not count:
            raise DataError(f"{dataset_dir}: the test split is empty")
        lat = latency_ms(predictor, sample, config)
        throughput = throughput_per_s(predictor, sample, config)
        weights = predictor.weights()
        del predictor
    record = {
        "name": name or os.path.basename(path.rstrip("/")),
        "format": fmt,
        "path": path,
        **classification_metrics(confusion),
        "loss": loss_sum / count,
        "confusion_matrix": confusion.tolist(),
        "num_test": count,
        "size_bytes": fsutil.size_bytes(path),
        "gzip_bytes": fsutil.gzip_bytes(path),
        "latency_ms_p50": float(np.percentile(lat, 50)),
        "latency_ms_p95": float(np.percentile(lat, 95)),
        "latency_ms_p99": float(np.percentile(lat, 99)),
        "latency_ms_mean": float(lat.mean()),
        "latency_iterations": len(lat),
        "latency_warmup": config.latency_warmup,
        "throughput_per_s": throughput,
        "throughput_batch_size": config.throughput_batch_size,
        "throughput_iterations": config.throughput_iterations,
        "runtime": runtime_lib.runtime_name() if fmt == "tflite" else "tf.saved_model",
        "num_threads": config.num_threads if fmt == "tflite" else None,
        "tf_intra_op_threads": (
            tf.config.threading.get_intra_op_parallelism_threads() if fmt == "saved_model" else None
        ),
        "peak_rss_bytes": memory.peak,
        "memory_bytes": memory.added,
        "memory_method": memory.method,
    }
    if weights is not None:
        record["params"], record["sparsity"] = weight_stats(weights)
        record["params_source"] = "measured"
    record["eval_seconds"] = round(time.perf_counter() - start, 3)
    return record, Outcomes(np.concatenate(labels), np.concatenate(predicted))


@dataclass(frozen=True)
class Candidate:
    """A model to evaluate: name, path, format and the metadata its step wrote."""

    name: str
    path: str
    format: str
    metadata: dict


def evaluate_candidates(
    candidates: list[Candidate],
    dataset_dir: str,
    config: EvalConfig = EvalConfig(),
    baseline: str = registry.BASELINE,
) -> list[dict]:
    """Evaluate every candidate; one that cannot be loaded or run gets an ``error``.
    Each other candidate's record gets its ``paired_drop`` against ``baseline``.

    Raises:
        ModelError: no candidate at all, or two candidates share a name.
        DataError: the dataset cannot be read (no candidate could be evaluated).
    """
    if not candidates:
        raise ModelError(
            "no candidate to evaluate: every variant was disabled or skipped "
            "and no baseline was given"
        )
    names = [c.name for c in candidates]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ModelError(f"candidates must have distinct names; repeated: {', '.join(dupes)}")
    info = schema.load_info(dataset_dir)
    sample = _test_sample(info, max(_LATENCY_EXAMPLES, config.throughput_batch_size))
    # What lives now (TensorFlow's modules and graphs: ~10^6 objects) stays; without the
    # freeze each of the collections below scanned it all again (0.2 s per candidate).
    gc.freeze()
    try:
        measured = [_evaluate_candidate(cand, dataset_dir, config, sample) for cand in candidates]
    finally:
        gc.unfreeze()  # a library caller's process collects as before afterwards
    _pair_with(baseline, measured)
    records = [record for record, _ in measured]
    flops.carry(baseline, records)
    return records


def _pair_with(baseline: str, measured: list[tuple[dict, Outcomes | None]]) -> None:
    """Each candidate's accuracy drop against the baseline on the same test examples,
    with McNemar's p-value (``paired_drop``): what the gate reads to tell a drop from
    noise (tfopt.evaluation.noise)."""
    ref = next((o for r, o in measured if r["name"] == baseline and o is not None), None)
    for record, outcomes in measured:
        if ref is None or outcomes is None or record["name"] == baseline:
            continue
        paired = noise.paired_drop(ref.labels, ref.predicted, outcomes.predicted)
        record["paired_drop"] = {**asdict(paired), "text": paired.describe()}


def _evaluate_candidate(
    cand: Candidate, dataset_dir: str, config: EvalConfig, sample
) -> tuple[dict, Outcomes | None]:
    """One candidate's record and outcomes; one that cannot be loaded or run gets an
    ``error`` (and no outcomes)."""
    outcomes = None
    try:
        record, outcomes = _measure(cand.path, cand.format, dataset_dir, config, cand.name, sample)
        log.info(
            "%s: accuracy %.4f, %d bytes, p50 %.3f ms, %.0f ex/s, peak RSS %.0f MiB",
            cand.name,
            record["accuracy"],
            record["size_bytes"],
            record["latency_ms_p50"],
            record["throughput_per_s"],
            record["peak_rss_bytes"] / 2**20,
        )
    except Exception as exc:  # a broken candidate is rejected, not fatal
        log.warning("candidate %s failed: %s", cand.name, exc)
        text = " ".join(str(exc).split())
        record = {
            "name": cand.name,
            "format": cand.format,
            "path": cand.path,
            "error": f"{type(exc).__name__}: {text[:500]}",
        }
    for key in ("params", "sparsity"):
        if key not in record and cand.metadata.get(key) is not None:
            record[key] = cand.metadata[key]
            record[f"{key}_source"] = "metadata"
    for key in ("base", *flops.KEYS, "notes", "quantization", "search", "uri"):
        if key in cand.metadata:
            record.setdefault(key, cand.metadata[key])
    origin = _model_origin(cand.path)
    if origin:
        record["origin"] = origin
    gc.collect()  # the predictor's TensorFlow objects, before the next candidate
    return record, outcomes


_ORIGIN_KEYS = ("source_uri", "source_format", "trainable", "output", "module_sha256", "keras")


def _model_origin(path: str) -> dict:
    """Where a SavedModel candidate came from (``tfopt_model.json``), for the model card."""
    info = model_info.read_model_info(path)
    return {k: info[k] for k in _ORIGIN_KEYS if k in info}


def config_dict(config: EvalConfig) -> dict:
    return asdict(config)
