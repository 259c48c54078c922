"""One loaded SavedModel version and the Predict / Classify / Regress calls on it.

Follows TF Serving's ``servables/tensorflow``: ``predict_util.cc`` (input
aliases, their count and dtypes are checked; shapes are left to the graph),
``classifier.cc`` / ``regressor.cc`` (signature method names, the ``inputs``
tensor of serialized ``tf.Example``, ``classes`` / ``scores`` / ``outputs``
checks) and ``util.cc`` (``Input`` protos to a string tensor).
"""

from __future__ import annotations

import os

import numpy as np

from tfopt._keras import tf
from tfopt.deploy.serving.status import (
    CLASSIFY_METHOD,
    DEFAULT_SIGNATURE,
    REGRESS_METHOD,
    ServingError,
    dtype_name,
    enum_name,
    from_tf_code,
    invalid,
    precondition,
)


class Servable:
    """One loaded version: the SavedModel's signatures and their SignatureDefs."""

    def __init__(self, name: str, version: int, path: str):
        self.name, self.version, self.path = name, version, path
        from tensorflow.core.protobuf import saved_model_pb2

        self._loaded = tf.saved_model.load(path)
        self.signatures = {
            k: f for k, f in self._loaded.signatures.items() if not k.startswith("__")
        }
        self.input_specs = {
            k: dict(f.structured_input_signature[1]) for k, f in self.signatures.items()
        }
        self.output_names = {k: sorted(f.structured_outputs) for k, f in self.signatures.items()}
        sm = saved_model_pb2.SavedModel()
        with tf.io.gfile.GFile(os.path.join(path, "saved_model.pb"), "rb") as fh:
            sm.ParseFromString(fh.read())
        # All of them, ``__saved_model_init_op`` included: GetModelMetadata returns
        # the meta graph's whole signature_def map (get_model_metadata_impl.cc).
        self.signature_defs = dict(sm.meta_graphs[0].signature_def.items())
        self.warmup_requests = 0

    # ---------------------------------------------------------------- Predict
    def check_inputs(self, signature_name: str, names: list[str]) -> dict:
        """The signature's input specs, after TF Serving's alias and count checks."""
        signature_name = signature_name or DEFAULT_SIGNATURE
        if signature_name not in self.signatures:
            raise precondition(f'Serving signature key "{signature_name}" not found.')
        specs = self.input_specs[signature_name]
        expected = sorted(specs)
        if len(names) != len(specs):  # VerifyRequestInputsSize (predict_util.cc)
            extra = sorted(set(names) - set(expected))
            missing = sorted(set(expected) - set(names))
            raise invalid(
                f"input size does not match signature: {len(names)}!={len(specs)} "
                f"len({{{','.join(sorted(names))}}}) != len({{{','.join(expected)}}})."
                f" Sent extra: {{{','.join(extra)}}}. Missing but required: "
                f"{{{','.join(missing)}}}."
            )
        for alias in names:  # saved_model::GetInputValues
            if alias not in specs:
                raise invalid(
                    f"input tensor alias not found in signature: {alias}. Inputs "
                    f"expected to be in the set {{{','.join(expected)}}}."
                )
        return specs

    def run(
        self,
        signature_name: str,
        inputs: dict[str, np.ndarray],
        output_filter: list[str] | None = None,
    ) -> dict[str, np.ndarray]:
        """Check aliases and dtypes, call the signature, return NumPy outputs."""
        signature_name = signature_name or DEFAULT_SIGNATURE
        specs = self.check_inputs(signature_name, list(inputs))
        outputs = self.output_names[signature_name]
        seen: set[str] = set()
        for alias in output_filter or ():
            if alias not in outputs:
                raise invalid(
                    f"output tensor alias not found in signature: {alias} Outputs "
                    f"expected to be in the set {{{','.join(outputs)}}}."
                )
            if alias in seen:
                raise invalid(f"duplicate output tensor alias: {alias}")
            seen.add(alias)
        feed = []
        for i, name in enumerate(sorted(specs)):  # flat order of a kwargs signature
            arr, spec = inputs[name], specs[name]
            if arr.dtype != spec.dtype.as_numpy_dtype and not (
                spec.dtype == tf.string and arr.dtype.kind in "OSU"
            ):
                got = dtype_name(arr.dtype) if arr.dtype.kind not in "OSU" else "string"
                raise invalid(
                    f"Expects arg[{i}] to be {dtype_name(spec.dtype)} but {got} is provided"
                )
            feed.append(tf.constant(arr, dtype=spec.dtype))
        result = self._call(signature_name, feed)
        wanted = list(output_filter) if output_filter else outputs
        return {k: result[k].numpy() for k in wanted}

    def _call(self, signature_name: str, feed: list) -> dict:
        fn = self.signatures[signature_name]
        try:
            # The flat call runs the graph on whatever shape it gets, as a TF Serving
            # session does: a shape the graph cannot take fails in the graph.
            return fn._call_flat(feed, fn.captured_inputs)
        except tf.errors.OpError as exc:
            # The session's status keeps its code (UNIMPLEMENTED, OUT_OF_RANGE,
            # RESOURCE_EXHAUSTED ...); the front ends turn it into TF Serving's HTTP status.
            raise from_tf_code(exc.error_code, _graph_error(exc)) from None
        except (ValueError, TypeError) as exc:  # refused before the graph runs
            raise invalid(_graph_error(exc)) from None

    # ------------------------------------------------------ Classify / Regress
    def _example_signature(self, signature_name: str, method: str, kind: str):
        signature_name = signature_name or DEFAULT_SIGNATURE
        sig = self.signature_defs.get(signature_name)
        if sig is None or signature_name.startswith("__"):
            raise invalid(f"No signature was found with the name: {signature_name}")
        if sig.method_name != method:
            raise invalid(
                f"Expected {kind} signature method_name to be {method}. Was: {sig.method_name}"
            )
        return signature_name, sig

    def check_classify(self, signature_name: str) -> tuple[str, list[str]]:
        """PreProcessClassification: the signature and its output aliases."""
        name, sig = self._example_signature(signature_name, CLASSIFY_METHOD, "classification")
        if len(sig.inputs) != 1:
            raise invalid("Expected one input Tensor.")
        if len(sig.outputs) not in (1, 2):
            raise invalid(f"Expected one or two output Tensors, found {len(sig.outputs)}")
        if "inputs" not in sig.inputs:
            raise precondition("No classification inputs found in SignatureDef: " + str(sig))
        outs = [k for k in ("classes", "scores") if k in sig.outputs]
        if not outs:
            raise precondition(
                'Expected classification signature outputs to contain at least one of "classes"'
                ' or "scores". Signature was: ' + str(sig)
            )
        return name, outs

    def check_regress(self, signature_name: str) -> tuple[str, list[str]]:
        """PreProcessRegression: the signature and its output alias."""
        name, sig = self._example_signature(signature_name, REGRESS_METHOD, "regression")
        if len(sig.inputs) != 1:
            raise invalid("Expected one input Tensor.")
        if len(sig.outputs) != 1:
            raise invalid("Expected one output Tensor.")
        if "inputs" not in sig.inputs:
            raise precondition("No regression inputs found in SignatureDef: " + str(sig))
        if "outputs" not in sig.outputs:
            raise precondition("No regression outputs found in SignatureDef: " + str(sig))
        return name, ["outputs"]

    def run_examples(self, signature_name: str, serialized: list[bytes]) -> dict[str, np.ndarray]:
        """Run an example signature on a string tensor of serialized ``tf.Example``."""
        result = self._call(signature_name, [tf.constant(serialized, dtype=tf.string)])
        return {k: v.numpy() for k, v in result.items()}


def _graph_error(exc: Exception) -> str:
    """The kernel's message, as a TF Serving session returns it (no Python traceback)."""
    lines = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip().splitlines()
    for i, line in enumerate(lines):
        # Eager adds "Graph execution error: / Detected at node ... / <stack>" before the
        # kernel's own line, which sits just above its "[[{{node ...}}]]" line.
        if i and line.lstrip().startswith("[[{{node") and lines[i - 1].strip():
            return lines[i - 1].strip()
    return lines[0]


def serialized_examples(input_proto) -> list[bytes]:
    """``Input`` -> serialized examples (util.cc: the context is merged into each)."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        out = [e.SerializeToString() for e in input_proto.example_list.examples]
    elif kind == "example_list_with_context":
        ctx = input_proto.example_list_with_context.context.SerializeToString()
        # Concatenated protos parse as a merge: the example's features win.
        out = [ctx + e.SerializeToString() for e in input_proto.example_list_with_context.examples]
    else:
        out = []
    if not out:
        raise invalid("Input is empty.")
    return out


def classification_result(outputs: dict[str, np.ndarray], n: int, result) -> None:
    """PostProcessClassificationResult: fill ``ClassificationResult`` after its checks."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for what, t, want in (("classes", classes, tf.string), ("scores", scores, tf.float32)):
        if t is None:
            continue
        if t.ndim != 2:
            raise invalid(
                f"Expected Tensor shape: [batch_size num_classes] but got {list(t.shape)}"
            )
        is_str = t.dtype.kind in "OSU"
        if (want == tf.string) != is_str or (not is_str and t.dtype != np.float32):
            raise invalid(
                f"Expected {what} Tensor of {enum_name(want)}. Got: "
                f"{enum_name(tf.string if is_str else t.dtype)}"
            )
        if t.shape[0] != n:
            raise invalid(f"Expected {what} output batch size of {n}. Got: {t.shape[0]}")
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise invalid(
            "Tensors class and score should match in dim_size(1). Got "
            f"{classes.shape[1]} vs. {scores.shape[1]}"
        )
    either = classes if classes is not None else scores
    assert either is not None  # the signature check requires "classes" or "scores"
    k = either.shape[1]
    for i in range(n):
        c = result.classifications.add()
        for j in range(k):
            cl = c.classes.add()
            if classes is not None:
                lab = classes[i, j]
                cl.label = lab.decode() if isinstance(lab, bytes) else str(lab)
            if scores is not None:
                cl.score = float(scores[i, j])


def regression_result(outputs: dict[str, np.ndarray], n: int, result) -> None:
    """PostProcessRegressionResult: fill ``RegressionResult`` after its checks."""
    t = outputs["outputs"]
    if not (t.ndim == 1 or (t.ndim == 2 and t.shape[1] == 1)):
        raise invalid(
            "Expected output Tensor shape to be either [batch_size] or [batch_size, 1] but "
            f"got {list(t.shape)}"
        )
    if t.shape[0] != n:
        raise invalid(f"Input batch size did not match output batch size: {n} vs. {t.shape[0]}")
    if t.dtype != np.float32:
        kind = tf.string if t.dtype.kind in "OSU" else t.dtype
        raise invalid(f"Expected output Tensor of DT_FLOAT.  Got: {enum_name(kind)}")
    for v in t.reshape(-1):
        result.regressions.add().value = float(v)


__all__ = [
    "Servable",
    "ServingError",
    "classification_result",
    "regression_result",
    "serialized_examples",
]
