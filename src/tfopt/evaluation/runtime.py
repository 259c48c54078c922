"""Run TFLite models: the LiteRT interpreter where importable, ``tf.lite.Interpreter`` otherwise.

The venv gets ``ai-edge-litert`` on a ``sys.path`` entry after site-packages
(``requirements/litert.txt``): there TF 2.21's converter, its int8 calibration
included, and LiteRT work in one process. ``tf.lite.Interpreter`` (deprecated)
stays only as the fallback for an environment without ai-edge-litert.
``TFOPT_TFLITE_RUNTIME`` (``auto``, ``litert``, ``tf.lite``) picks one explicitly.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tfopt import fsutil
from tfopt._keras import tf
from tfopt.checks import check_choice
from tfopt.errors import ConfigError, ModelError
from tfopt.evaluation import runtime

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "litert", "tf.lite")


def _interpreter_class():
    choice = os.environ.get("TFOPT_TFLITE_RUNTIME", "auto")
    if choice not in RUNTIMES:
        raise ConfigError(
            f"TFOPT_TFLITE_RUNTIME={choice!r} is not allowed: expected one of {', '.join(RUNTIMES)}"
        )
    if choice != "tf.lite":
        try:
            from ai_edge_litert.interpreter import Interpreter

            return Interpreter, "ai_edge_litert"
        except ImportError:
            if choice == "litert":
                raise ConfigError(
                    "TFOPT_TFLITE_RUNTIME='litert' but ai_edge_litert is not importable"
                ) from None
    return tf.lite.Interpreter, "tf.lite"


def runtime_name() -> str:
    return _interpreter_class()[1]


def interpreter_from_content(content: bytes):
    """An interpreter (not allocated) over flatbuffer bytes, for introspection."""
    return _interpreter_class()[0](model_content=content)


class TFLiteModel:
    """A loaded ``.tflite`` classifier: float features in, probabilities out.

    Quantizes inputs and dequantizes outputs itself when the model has
    integer input/output tensors, and resizes the batch dimension on demand.
    """

    def __init__(self, path: str, num_threads: int | None = None, content: bytes | None = None):
        cls, _ = _interpreter_class()
        self.path = path
        self.num_threads = num_threads
        source = dict(model_content=content) if content is not None else dict(model_path=path)
        self.interpreter = cls(**source, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = int(self._input["shape"][0])

    @classmethod
    def from_content(cls, content: bytes, num_threads: int | None = None) -> TFLiteModel:
        """A model from flatbuffer bytes (no file)."""
        return cls("<memory>", num_threads, content=content)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """The shape of one input example."""
        return tuple(int(d) for d in self._input["shape"][1:])

    @property
    def input_dtype(self):
        return self._input["dtype"]

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            shape = [batch, *self._input["shape"][1:]]
            self.interpreter.resize_tensor_input(self._input["index"], shape)
            self.interpreter.allocate_tensors()
            self._input = self.interpreter.get_input_details()[0]
            self._output = self.interpreter.get_output_details()[0]
            self._batch = batch

    def prepare(self, x: np.ndarray) -> np.ndarray:
        """Convert float features to what the input tensor takes."""
        dtype = self._input["dtype"]
        if dtype == np.float32:
            return x.astype(np.float32, copy=False)
        scale, zero = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)

    def invoke_prepared(self, xq: np.ndarray) -> np.ndarray:
        self._resize(len(xq))
        self.interpreter.set_tensor(self._input["index"], xq)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self._output["index"])
        if self._output["dtype"] != np.float32:
            scale, zero = self._output["quantization"]
            out = (out.astype(np.float32) - zero) * scale
        return out

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        outs = [
            self.invoke_prepared(self.prepare(x[i : i + batch_size]))
            for i in range(0, len(x), batch_size)
        ]
        return np.concatenate(outs)


FORMATS = ("saved_model", "tflite")


class Predictor:
    """A uniform ``predict(x) -> probabilities`` over both formats."""

    def __init__(self, path: str, fmt: str, num_threads: int = 1):
        check_choice("Predictor", "fmt", fmt, FORMATS)
        self.path, self.format = path, fmt
        if fmt == "tflite":
            if not fsutil.exists(path) or os.path.isdir(path):
                raise ModelError(f"{path}: TFLite model file not found")
            try:
                self._tflite = runtime.TFLiteModel(path, num_threads=num_threads or None)
            except (ValueError, RuntimeError) as exc:
                raise ModelError(f"{path}: cannot load the TFLite model ({exc})") from None
        else:
            if not fsutil.exists(os.path.join(path, "saved_model.pb")):
                raise ModelError(f"{path}: not a SavedModel directory (no saved_model.pb)")
            try:
                loaded = tf.saved_model.load(path)
            except Exception as exc:  # TF raises many types for a corrupt model
                first = str(exc).splitlines()[0] if str(exc) else ""
                raise ModelError(
                    f"{path}: cannot load the SavedModel ({type(exc).__name__}: {first})"
                ) from None
            if "serving_default" not in loaded.signatures:
                raise ModelError(f"{path}: SavedModel has no serving_default signature")
            self._loaded = loaded  # keep the variables alive
            self._fn = loaded.signatures["serving_default"]
            self._input = next(iter(self._fn.structured_input_signature[1]))

    def check_fits(self, feature_shape: tuple[int, ...]) -> None:
        """Fail clearly, before any prediction, when one example's shape is not the model's."""
        if self.format == "tflite":
            expected = self._tflite.feature_shape
        else:
            expected = tuple(self._fn.structured_input_signature[1][self._input].shape[1:])
        fits = len(expected) == len(feature_shape) and all(
            e is None or e == f for e, f in zip(expected, feature_shape, strict=True)
        )
        if not fits:
            shown = tuple("?" if e is None else e for e in expected)
            raise ModelError(
                f"{self.path}: the model takes inputs of shape {shown}, but the "
                f"dataset's examples have shape {tuple(feature_shape)}"
            )

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        if self.format == "tflite":
            return self._tflite.predict(x, batch_size)
        outs = []
        for i in range(0, len(x), batch_size):
            out = self._fn(**{self._input: tf.constant(x[i : i + batch_size])})
            outs.append(next(iter(out.values())).numpy())
        return np.concatenate(outs)

    def single_call(self, x1: np.ndarray):
        """A call on ``x1`` with the input already in the model's form (for timing)."""
        if self.format == "tflite":
            xq = self._tflite.prepare(x1)
            return lambda: self._tflite.invoke_prepared(xq)
        t = tf.constant(x1)
        return lambda: self._fn(**{self._input: t})

    def weights(self) -> list[np.ndarray] | None:
        """The stored weights (SavedModel variables / TFLite constant tensors), or None."""
        try:
            if self.format == "saved_model":
                reader = tf.train.load_checkpoint(os.path.join(self.path, "variables", "variables"))
                return [
                    reader.get_tensor(n)
                    for n in sorted(reader.get_variable_to_shape_map())
                    if n.endswith(".ATTRIBUTES/VARIABLE_VALUE")
                    and not n.startswith(("keras_api/metrics/", "save_counter"))
                ]
            interp = self._tflite.interpreter
            produced = {int(o) for op in interp._get_ops_details() for o in op["outputs"]}
            inputs = {d["index"] for d in interp.get_input_details()}
            out = []
            for d in interp.get_tensor_details():
                if d["index"] in produced or d["index"] in inputs or not len(d["shape"]):
                    continue
                value = interp.get_tensor(d["index"])
                if value.size <= 1 or (
                    value.ndim == 1 and value.size <= 8 and value.dtype in (np.int32, np.int64)
                ):
                    continue  # a shape or folded scalar constant, not a weight
                out.append(value)
            return out
        except Exception as exc:  # weights are informative; never fail the evaluation
            log.debug("cannot read the weights of %s: %s", self.path, exc)
            return None


def op_types(content: bytes) -> list[str]:
    """Op types of a TFLite flatbuffer (empty when they cannot be read)."""
    try:
        interp = interpreter_from_content(content)
        return sorted({d["op_name"] for d in interp._get_ops_details()})
    except Exception:  # introspection is best effort
        return []


def float_ops_in_int8(content: bytes) -> list[str]:
    """Ops an int8 model runs in float: those fed through DEQUANTIZE (best effort)."""
    try:
        interp = interpreter_from_content(content)
        details = interp._get_ops_details()
        tensors = {t["index"]: t for t in interp.get_tensor_details()}
    except Exception:
        return []
    out = set()
    for op in details:
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        ins = [tensors[i] for i in op["inputs"] if i in tensors]
        if any(t["dtype"] == np.float32 for t in ins):
            out.add(op["op_name"])
    return sorted(out)
