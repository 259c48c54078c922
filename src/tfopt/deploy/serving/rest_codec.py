"""TF Serving's REST JSON <-> tensors and ``tf.Example``, as ``util/json_tensor.cc`` does it.

Predict: row (``instances``) and columnar (``inputs``) formats; numbers to
float (lossless only) / double, integers only to int types, ``true``/``false``
only to bool, strings or ``{"b64": ...}`` to string tensors. Outputs whose
alias ends in ``_bytes`` come back as ``{"b64": ...}``. Classify / Regress:
``examples`` (and an optional ``context``) of feature name -> value(s).
"""

from __future__ import annotations

import base64
import binascii
import json

import numpy as np

from tfopt._keras import tf
from tfopt.deploy.serving.status import dtype_name, invalid

_FLOAT_MAX_INT = {np.dtype(np.float32): (1 << 24) - 1, np.dtype(np.float64): (1 << 53) - 1}


def parse_body(body: bytes) -> dict:
    if not body.strip():
        raise invalid("JSON Parse error: The document is empty")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise invalid(f"JSON Parse error: {type(exc).__name__}: {exc}") from None
    if not isinstance(doc, dict):
        raise invalid("JSON Parse error: the request body must be a JSON object")
    sig = doc.get("signature_name", "")
    if not isinstance(sig, str):
        raise invalid(
            f"JSON Value: {json.dumps(sig)} not formatted correctly. 'signature_name' key "
            f"must be a string value."
        )
    return doc


def _json_text(v) -> str:
    return json.dumps(v, separators=(",", ":"))


def _json_type(v) -> str:
    if v is None:
        return "Null"
    if isinstance(v, bool):
        return "True" if v else "False"
    names: dict[type, str] = {dict: "Object", list: "Array", str: "String"}
    return names.get(type(v), "Number")


def _type_error(v, dtype) -> Exception:
    return invalid(
        f"JSON Value: {_json_text(v)} Type: {_json_type(v)} is not of expected type: "
        f"{dtype_name(dtype)}"
    )


def is_b64(v) -> bool:
    return isinstance(v, dict) and len(v) == 1 and isinstance(v.get("b64"), str)


def _b64(v) -> bytes:
    try:
        return base64.b64decode(v["b64"], validate=True)
    except (binascii.Error, ValueError):
        raise invalid("Unable to base64 decode") from None


def _shape(v) -> list[int]:
    shape = []
    while isinstance(v, list):
        shape.append(len(v))
        if not v:
            break
        v = v[0]
    return shape


def _check_dense(v, shape: list[int], level: int = 0) -> None:
    if not isinstance(v, list):
        if level != len(shape):
            raise invalid(
                f"JSON Value: {_json_text(v)} found at incorrect level: {level + 1} in the "
                f"JSON DOM. Expected at level: {len(shape)}"
            )
        return
    if level >= len(shape):
        raise invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(v) != shape[level]:
        raise invalid(
            f"Encountered list at unexpected size: {len(v)} at level: {level} expected "
            f"size: {shape[level]}"
        )
    for e in v:
        _check_dense(e, shape, level + 1)


def _leaves(v):
    if isinstance(v, list):
        for e in v:
            yield from _leaves(e)
    else:
        yield v


def to_array(value, dtype: tf.DType) -> np.ndarray:
    """One JSON value (scalar or nested lists) -> an array of ``dtype`` (AddValueToTensor)."""
    want = np.dtype(object) if dtype == tf.string else np.dtype(dtype.as_numpy_dtype)
    try:  # fast path: a dense list of one JSON type
        arr = np.asarray(value)
        kind = arr.dtype.kind
    except (ValueError, TypeError, RecursionError):
        kind = "O"
    if kind == "O" or (dtype == tf.string and kind != "U"):
        shape = _shape(value)
        _check_dense(value, shape)
        out = [_leaf(v, dtype) for v in _leaves(value)]
        return np.array(out, dtype=want).reshape(shape)
    ok = "iuf" if want.kind == "f" else ("iu" if want.kind in "iu" else want.kind)
    if dtype == tf.string:
        ok = "U"
    if kind not in ok:
        bad = next(v for v in _leaves(value) if not _leaf_ok(v, dtype))
        raise _type_error(bad, dtype)
    if want.kind == "f" and kind in "iu" and arr.size:
        limit = _FLOAT_MAX_INT.get(want)
        if limit is not None and np.abs(arr).max() > limit:
            v = next(v for v in _leaves(value) if abs(v) > limit)
            raise invalid(
                f"Cannot convert JSON value: {v} to {dtype_name(dtype)} without loss of precision."
            )
    if dtype == tf.string:
        return np.array([s.encode() for s in arr.reshape(-1)], dtype=object).reshape(arr.shape)
    return arr.astype(want)


def _leaf_ok(v, dtype) -> bool:
    try:
        _leaf(v, dtype)
        return True
    except Exception:
        return False


def _leaf(v, dtype):
    if dtype == tf.string:
        if isinstance(v, str):
            return v.encode()
        if is_b64(v):
            return _b64(v)
        if isinstance(v, dict):
            raise invalid(f"JSON Value: {_json_text(v)} not formatted correctly for base64 data")
        raise _type_error(v, dtype)
    if dtype == tf.bool:
        if isinstance(v, bool):
            return v
        raise _type_error(v, dtype)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _type_error(v, dtype)
    if dtype.is_integer and not isinstance(v, int):
        raise _type_error(v, dtype)
    return v


def rows_to_inputs(instances, specs: dict) -> dict[str, np.ndarray]:
    """Row format: a list of instances, each a value or an object of named inputs."""
    if not isinstance(instances, list) or not instances:
        raise invalid("Expecting 'instances' to be a non-empty list/array")
    names = sorted(specs)
    named = [isinstance(i, dict) and not is_b64(i) for i in instances]
    if all(named):
        for inst in instances:
            for k in inst:
                if k not in specs:
                    raise invalid(f"JSON object: does not have named input: {k}")
            if len(inst) != len(names):
                raise invalid(
                    f"Expecting object with {len(names)} keys, got {len(inst)} keys: the "
                    f"signature has inputs {names}"
                )
        out = {}
        for n in names:
            rows = [to_array(inst[n], specs[n].dtype) for inst in instances]
            shapes = {r.shape for r in rows}
            if len(shapes) != 1:
                raise invalid(
                    f"Expecting tensor size: {rows[0].size} but got: "
                    f"{next(r.size for r in rows if r.shape != rows[0].shape)} for input: {n}"
                )
            out[n] = np.stack(rows)
        return out
    if any(named):
        raise invalid("Expecting all 'instances' to be objects or all to be values")
    if len(names) != 1:
        raise invalid(
            f"The signature has {len(names)} inputs {names}; each instance must be an "
            f"object naming them"
        )
    return {names[0]: to_array(instances, specs[names[0]].dtype)}


def columns_to_inputs(inputs, specs: dict) -> dict[str, np.ndarray]:
    """Columnar format: a value (one input) or an object of named inputs."""
    names = sorted(specs)
    if isinstance(inputs, dict) and not is_b64(inputs):
        return {k: to_array(v, specs[k].dtype) if k in specs else v for k, v in inputs.items()}
    if len(names) != 1:
        raise invalid(
            f"The signature has {len(names)} inputs {names}; 'inputs' must be an object naming them"
        )
    return {names[0]: to_array(inputs, specs[names[0]].dtype)}


def _json_value(name: str, arr: np.ndarray):
    if arr.dtype.kind in "OSU":
        if name.endswith("_bytes"):
            enc = np.vectorize(lambda b: {"b64": base64.b64encode(b).decode()}, otypes=[object])
        else:
            enc = np.vectorize(
                lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b,
                otypes=[object],
            )
        return enc(arr).tolist() if arr.size else arr.tolist()
    if arr.dtype == np.float32:
        # WriteDecimal: the shortest text that reads back as the same float32 (0.1, not
        # 0.10000000149011612), which the float32 -> double widening of tolist() loses.
        return arr.astype(str).astype(np.float64).tolist()
    return arr.tolist()


def predict_json(outputs: dict[str, np.ndarray], row: bool) -> dict:
    """MakeJsonFromTensors: ``predictions`` (row) or ``outputs`` (columnar)."""
    if not row:
        if len(outputs) == 1:
            ((k, v),) = outputs.items()
            return {"outputs": _json_value(k, v)}
        return {"outputs": {k: _json_value(k, v) for k, v in outputs.items()}}
    if len(outputs) == 1:
        ((k, v),) = outputs.items()
        return {"predictions": _json_value(k, v)}
    batch = None
    for k, v in outputs.items():
        if v.ndim == 0:
            raise invalid(f"Tensor name: {k} has no shape information ")
        if batch is None:
            batch = v.shape[0]
        elif v.shape[0] != batch:
            raise invalid(
                f"Tensor name: {k} has inconsistent batch size: {v.shape[0]} expecting: {batch}"
            )
    cols = {k: _json_value(k, v) for k, v in outputs.items()}
    return {"predictions": [{k: c[i] for k, c in cols.items()} for i in range(batch or 0)]}


def _feature(name: str, value, feature) -> None:
    vals = value if isinstance(value, list) else [value]
    if not vals:
        return
    if all(isinstance(v, str) or is_b64(v) for v in vals):
        feature.bytes_list.value.extend(v.encode() if isinstance(v, str) else _b64(v) for v in vals)
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        feature.int64_list.value.extend(vals)
    elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        feature.float_list.value.extend(float(v) for v in vals)
    else:
        raise invalid(
            f"Feature: {name} has values of mixed or unsupported types: {_json_text(value)}"
        )


def _example(obj, what: str):
    if not isinstance(obj, dict):
        raise invalid(f"Example must be JSON object but got JSON {_json_type(obj)}")
    ex = tf.train.Example()
    for k, v in obj.items():
        _feature(k, v, ex.features.feature[k])
    return ex


def fill_input(doc: dict, input_proto) -> None:
    """``examples`` / ``context`` -> ``Input`` (FillClassification/RegressionRequestFromJson)."""
    if "examples" not in doc:
        raise invalid("'examples' key must be specified in the request")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise invalid(f"'examples' must be an array, but got {_json_type(examples)}")
    if "context" in doc:
        target = input_proto.example_list_with_context
        target.context.CopyFrom(_example(doc["context"], "context"))
    else:
        target = input_proto.example_list
    for e in examples:
        target.examples.add().CopyFrom(_example(e, "example"))


def classify_json(result) -> dict:
    return {"results": [[[c.label, c.score] for c in cl.classes] for cl in result.classifications]}


def regress_json(result) -> dict:
    return {"results": [r.value for r in result.regressions]}
