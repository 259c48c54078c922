"""Run TFLite models: LiteRT where importable, ``tf.lite.Interpreter`` otherwise.

``ai-edge-litert`` installed beside TensorFlow 2.21 breaks full-integer
conversion (see ARCHITECTURE.md), so the converting environment does not
have it; an inference-only image may, and then gets the maintained runtime.
"""

from __future__ import annotations

import numpy as np


def _interpreter_class():
    try:  # pragma: no cover - absent in the converting environment
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, "ai_edge_litert"
    except ImportError:
        from tfopt._keras import tf

        return tf.lite.Interpreter, "tf.lite"


def runtime_name() -> str:
    return _interpreter_class()[1]


class TFLiteModel:
    """A loaded ``.tflite`` classifier: float features in, probabilities out.

    Quantizes inputs and dequantizes outputs itself when the model has
    integer input/output tensors, and resizes the batch dimension on demand.
    """

    def __init__(self, path: str, num_threads: int | None = None):
        cls, _ = _interpreter_class()
        self.path = path
        self.num_threads = num_threads
        self.interpreter = cls(model_path=path, num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self._batch = int(self._input["shape"][0])

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
        outs = [self.invoke_prepared(self.prepare(x[i:i + batch_size]))
                for i in range(0, len(x), batch_size)]
        return np.concatenate(outs)
