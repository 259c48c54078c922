"""Read a ``.tflite`` flatbuffer with LiteRT's schema: tensor types, ops, signatures.

The interpreter reports int4 tensors as int8, so dtypes are read from the
flatbuffer itself (``ai_edge_litert.schema_py_generated``).
"""

from __future__ import annotations

import os
from collections import Counter

from tfopt import fsutil
from tfopt.errors import ModelError

# Tensor types a float model may hold (int32/int64/bool for shapes and indices).
_FLOAT_MODEL_TYPES = {"FLOAT32", "INT32", "INT64", "BOOL", "STRING"}
# Ops whose constant weights LiteRT Quantizer's weight recipes quantize.
WEIGHT_OPS = {
    "BATCH_MATMUL",
    "CONV_2D",
    "CONV_3D",
    "DEPTHWISE_CONV_2D",
    "EMBEDDING_LOOKUP",
    "FULLY_CONNECTED",
    "TRANSPOSE_CONV",
}


class QuantizerUnavailableError(ModelError):
    """litert-quantizer cannot be imported in this environment (image)."""


def _schema():
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:
        raise QuantizerUnavailableError(
            f"ai-edge-litert is not importable here ({exc}); install requirements/litert.txt"
        ) from None
    return schema_py_generated


def _names(cls) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def _model(content: bytes):
    s = _schema()
    try:
        if not s.Model.ModelBufferHasIdentifier(content, 0):
            raise ValueError("no TFL3 identifier")
        model = s.Model.GetRootAs(content, 0)
        model.SubgraphsLength()
    except Exception as exc:  # a truncated or foreign file raises anything
        raise ModelError(f"not a TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
    return model


def tensor_types(content: bytes) -> Counter:
    """Tensor count per type name (``FLOAT32``, ``INT8``, ``INT16``, ``INT4`` ...)."""
    names = _names(_schema().TensorType)
    model = _model(content)
    counts: Counter = Counter()
    for g in range(model.SubgraphsLength()):
        graph = model.Subgraphs(g)
        for t in range(graph.TensorsLength()):
            counts[names.get(graph.Tensors(t).Type(), "UNKNOWN")] += 1
    return counts


def op_types(content: bytes) -> list[str]:
    """The builtin op names used by the model, sorted."""
    names = _names(_schema().BuiltinOperator)
    model = _model(content)
    out = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        out.add(names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM"))
    return sorted(out)


def op_output_names(content: bytes) -> list[str]:
    """The first output tensor name of each op of the main subgraph, in execution order."""
    graph = _model(content).Subgraphs(0)
    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if op.OutputsLength():
            out.append(graph.Tensors(op.Outputs(0)).Name().decode())
    return out


def op_graph(content: bytes) -> list[tuple[str, list[str]]]:
    """Each op of the main subgraph in execution order: (first output name, activation inputs),
    the activation inputs being the inputs made by an earlier op or fed to the graph."""
    graph = _model(content).Subgraphs(0)
    made = {graph.Inputs(i) for i in range(graph.InputsLength())}
    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        if not op.OutputsLength():
            continue
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        names = [graph.Tensors(t).Name().decode() for t in ins if t in made]
        out.append((graph.Tensors(op.Outputs(0)).Name().decode(), names))
        made.update(op.Outputs(j) for j in range(op.OutputsLength()))
    return out


def weight_op_names(content: bytes) -> list[str]:
    """First output names of the conv / dense / embedding ops (main subgraph) fed a constant
    float tensor of rank >= 2: the weights that weight-only and dynamic recipes quantize."""
    model = _model(content)
    graph = model.Subgraphs(0)
    float32 = _schema().TensorType.FLOAT32
    names = _names(_schema().BuiltinOperator)

    def kind(op) -> str:
        code = model.OperatorCodes(op.OpcodeIndex())
        return names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")

    def constant(t: int) -> bool:
        tensor = graph.Tensors(t)
        buf = model.Buffers(tensor.Buffer()) if tensor.Buffer() else None
        has_data = buf is not None and (buf.DataLength() > 0 or buf.Size() > 0)
        return has_data and tensor.Type() == float32 and tensor.ShapeLength() >= 2

    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        if kind(op) not in WEIGHT_OPS or not op.OutputsLength():
            continue
        if any(t >= 0 and constant(t) for t in ins):
            out.append(graph.Tensors(op.Outputs(0)).Name().decode())
    return out


def signature_input(content: bytes, path: str) -> tuple[str, str, tuple[int, ...]]:
    """(signature key, input name, shape of one example) of a one-input model's first
    signature."""
    model = _model(content)
    if not model.SignatureDefsLength():
        raise ModelError(f"{path}: the TFLite model has no signature (LiteRT Quantizer needs one)")
    sig = model.SignatureDefs(0)
    if sig.InputsLength() != 1:
        raise ModelError(f"{path}: signature has {sig.InputsLength()} inputs; one is supported")
    graph = model.Subgraphs(sig.SubgraphIndex())
    tensor = graph.Tensors(sig.Inputs(0).TensorIndex())
    shape = tuple(int(tensor.Shape(i)) for i in range(1, tensor.ShapeLength()))
    return sig.SignatureKey().decode(), sig.Inputs(0).Name().decode(), shape


def read_float_model(path: str) -> bytes:
    """The bytes of a float32 ``.tflite`` file; a clear error for anything else."""
    from tfopt._keras import tf

    if not fsutil.exists(path) or os.path.isdir(path):
        raise ModelError(f"{path}: TFLite model file not found")
    with tf.io.gfile.GFile(path, "rb") as fh:
        content = fh.read()
    try:
        types = tensor_types(content)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from None
    other = sorted(set(types) - _FLOAT_MODEL_TYPES)
    if other:
        raise ModelError(
            f"{path}: not a float32 TFLite model (it has {', '.join(other)} tensors); "
            "LiteRT Quantizer quantizes the float export"
        )
    return content
