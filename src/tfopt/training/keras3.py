"""Keras 3 models in and out (issue 30): a verified translation to tf_keras, and back.

tfopt's techniques run on tf_keras (tensorflow-model-optimization needs Keras 2), and
Keras 3 is the ``keras`` package itself, importable beside tf_keras in one process
(``keras3_layers.k3``). A Keras 3 functional or Sequential model is rebuilt in tf_keras
node by node from its own graph (``_nodes_by_depth``: the layers, their call arguments,
shared layers and nested models kept), each layer from its ``get_config()``
(``keras3_layers``), then the weights are copied layer by layer and the two models'
outputs compared: a translation whose outputs differ by more than ``TOLERANCE`` is an
error, never a silent approximation. The same walk runs the other way for the Keras 3
file a Keras 3 user gets back (``write_keras3``).

Where a Keras 3 model came from travels in ``tfopt_model.json`` under ``keras``
(``ORIGIN_KEY``): the version, how it came (``file`` / ``module_file``), whether it was
translated, the check's figures, and per SavedModel the Keras 3 file written beside it
(``keras3_file``) or why none (``keras3_note``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import weakref
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from tfopt._keras import keras as tfk
from tfopt._keras import tf
from tfopt.errors import ModelError
from tfopt.training.keras3_layers import NoEquivalentError, k3, to_k3, to_tfk

log = logging.getLogger(__name__)

# Largest |difference| allowed between the two models' outputs: float32 rounding through
# ~50 layers of differently fused kernels reaches ~1e-5 (ResNet50: 1.2e-5 measured); a
# wrong translation (a lost epsilon, a swapped axis) is 1e-2 or more.
TOLERANCE = 1e-4
CHECK_EXAMPLES = 256  # examples the import compares the two models on
RANDOM_EXAMPLES = 16  # random inputs where no dataset is at hand (module file, way back)
KERAS3_FILE = "model.keras"  # the Keras 3 copy inside a SavedModel directory
ORIGIN_KEY = "keras"

__all__ = ["NoEquivalentError", "k3"]


def file_version(path: str) -> str | None:
    """The Keras version that saved a ``.keras`` / ``.h5`` file when it is Keras 3, else
    None (a tf_keras file, or not readable as either: the loader then says why)."""
    version = ""
    try:
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as zf:
                for name in ("metadata.json", "config.json"):
                    if name in zf.namelist():
                        version = str(json.loads(zf.read(name)).get("keras_version", ""))
                        break
        else:
            import h5py  # type: ignore[import-untyped]

            with h5py.File(path, "r") as fh:
                raw = fh.attrs.get("keras_version", b"")
                version = raw.decode() if isinstance(raw, bytes) else str(raw)
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError, AttributeError):
        return None
    return version if version.startswith("3") else None


def _unknown_class(text: str) -> str | None:
    for marker in ("Could not locate class '", "Unknown layer: '", "Unknown layer: "):
        if marker in text:
            return text.split(marker, 1)[1].split("'")[0].split(".")[0].strip()
    return None


def load(uri: str, local: str, custom: dict, version: str) -> Any:
    """The Keras 3 model in the file ``local`` (the local copy of ``uri``)."""
    km = k3()
    # also under the names Keras 3 saved them by (``package>Name`` when registered)
    custom = {
        **{km.saving.get_registered_name(c): c for c in custom.values() if isinstance(c, type)},
        **custom,
    }
    try:
        return km.saving.load_model(local, custom_objects=custom or None, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        text = str(exc).strip()
        missing = _unknown_class(text)
        if missing:
            raise ModelError(
                f"model_uri {uri}: saved by Keras {version}; it uses the custom layer "
                f"{missing!r}, which tfopt cannot find: give its Keras 3 class in a module "
                f"file's custom_objects (module_file=my_model.py with custom_objects = "
                f"{{{missing!r}: {missing}}}; given: {sorted(custom) or 'none'}). For "
                "pruning, QAT, low-rank and clustering, also map it to a tf_keras class in "
                f"tf_keras_objects = {{{missing!r}: ...}}"
            ) from None
        first = text.splitlines()[0] if text else ""
        raise ModelError(
            f"model_uri {uri}: saved by Keras {version}, Keras 3 cannot load it "
            f"({type(exc).__name__}: {first[:300]})"
        ) from None


def load_translated(path: str, custom: dict, version: str, objects: dict | None = None):
    """The Keras 3 file at ``path`` as a tf_keras model (outputs compared on random
    inputs: no dataset here), marked with its origin."""
    source = load(path, path, custom, version)
    model = to_tf_keras(source, objects, where=path)
    x = random_inputs(source)
    diff = check_equal(source, model, x, path)
    mark(
        model,
        origin(
            version,
            "file",
            True,
            max_abs_diff=diff,
            checked_examples=len(x),
            layers=len(model.layers),
        ),
    )
    return model


def subclassed_error(where: str, model) -> ModelError:
    return ModelError(
        f"{where}: {type(model).__name__} is a subclassed Keras 3 model: it has no layer "
        "graph tfopt can rebuild in tf_keras, so pruning, QAT, pruning-preserving QAT, "
        "low-rank and clustering cannot apply. What can: the post-training variants (TFLite, "
        "LiteRT) and distillation with it as the teacher: export it with Keras 3's "
        "`model.export('exported_dir')` and pass that directory as model_uri. For every "
        "technique, build the same layers with the functional API or keras.Sequential"
    )


def is_graph(model) -> bool:
    """A Keras 3 functional or Sequential model (one tfopt can rebuild)."""
    km = k3()
    return isinstance(model, km.Sequential) or hasattr(model, "_nodes_by_depth")


# ---- the graph walk, both ways ----------------------------------------------------------


def _input_like(api, kt, name: str):
    shape = list(kt.shape)
    dtype = kt.dtype if isinstance(kt.dtype, str) else kt.dtype.name
    return api.Input(shape=tuple(shape[1:]), batch_size=shape[0], dtype=dtype, name=name)


def _history_layer(kt):
    return kt._keras_history[0]


class _Walk:
    """Rebuilds one Keras' functional / Sequential model with the other's layers."""

    def __init__(self, api, source_api, translate: Callable, objects: dict):
        self.api, self.source_api, self.translate, self.objects = (
            api,
            source_api,
            translate,
            objects,
        )
        self.pairs: list[tuple[Any, Any]] = []
        self._done: dict[int, Callable] = {}

    def op(self, src) -> Callable:
        """The translated callable of ``src`` (a layer, an op or a nested model), once."""
        if id(src) not in self._done:
            if isinstance(src, self.source_api.Model):
                self._done[id(src)] = self.model(src)
            else:
                fn, pairs = self.translate(src, self.objects)
                self._done[id(src)] = fn
                self.pairs += pairs
        return self._done[id(src)]

    def model(self, src):
        inputs = [_input_like(self.api, kt, _history_layer(kt).name) for kt in src.inputs]
        nodes = getattr(src, "_nodes_by_depth", None)
        if nodes is None or (self.source_api is tfk and not src._is_graph_network):
            x = inputs[0]  # a Sequential: its layers in order
            for layer in src.layers:
                x = self.op(layer)(x)
            outputs = [x]
        else:
            outputs = self._graph(src, nodes, inputs)
        return self.api.Model(
            inputs[0] if len(inputs) == 1 else inputs,
            outputs[0] if len(outputs) == 1 else outputs,
            name=src.name,
        )

    def _graph(self, src, nodes_by_depth, inputs) -> list:
        tensors = {id(s): d for s, d in zip(src.inputs, inputs, strict=True)}
        is_keras3 = self.source_api is not tfk
        for depth in sorted(nodes_by_depth, reverse=True):
            for node in nodes_by_depth[depth]:
                if node.is_input:
                    continue
                if is_keras3:
                    op, args, kwargs = node.operation, node.arguments.args, node.arguments.kwargs
                else:
                    op, args, kwargs = node.layer, node.call_args, node.call_kwargs
                flat = tf.nest.flatten((args, kwargs))
                if any(_is_symbolic(a) and id(a) not in tensors for a in flat):
                    continue  # a node of another graph sharing a layer
                args, kwargs = tf.nest.map_structure(
                    lambda a: tensors[id(a)] if _is_symbolic(a) else a, (args, kwargs)
                )
                out = self.op(op)(*args, **kwargs)
                for s, d in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(out), strict=True):
                    tensors[id(s)] = d
        return [tensors[id(o)] for o in src.outputs]


def _is_symbolic(value) -> bool:
    return hasattr(value, "_keras_history")


def copy_weights(pairs: list[tuple[Any, Any]]) -> None:
    """Set each translated layer's weights to its source's, shapes checked."""
    for src, dst in pairs:
        values = src.get_weights()
        shapes = [tuple(v.shape) for v in values]
        want = [tuple(w.shape) for w in dst.weights]
        if shapes != want:
            raise NoEquivalentError(
                src.name, type(src).__name__, f"its weights {shapes} do not fit {want}"
            )
        dst.set_weights(values)


def to_tf_keras(model, objects: dict | None = None, where: str = "model"):
    """The Keras 3 functional / Sequential ``model`` as a tf_keras model, weights copied.

    ``objects``: name -> tf_keras class for the user's own layers. Raises ``NoEquivalentError``
    (a layer with no equivalent, named) or ``ModelError`` (a subclassed model).
    """
    if not is_graph(model):
        raise subclassed_error(where, model)
    walk = _Walk(tfk, k3(), to_tfk, dict(objects or {}))
    out = walk.model(model)
    copy_weights(walk.pairs)
    return out


def to_keras3(model, objects: dict | None = None):
    """The tf_keras ``model`` as a Keras 3 model (the way back), weights copied.
    ``objects``: tf_keras class name -> Keras 3 class for the user's own layers."""
    if not getattr(model, "_is_graph_network", False):
        raise NoEquivalentError(model.name, type(model).__name__, "a subclassed tf_keras model")
    walk = _Walk(k3(), tfk, to_k3, dict(objects or {}))
    out = walk.model(model)
    copy_weights(walk.pairs)
    return out


def _outputs(model, x: np.ndarray) -> np.ndarray:
    parts = [
        np.asarray(tf.nest.flatten(model(x[i : i + 64], training=False))[0], np.float64)
        for i in range(0, len(x), 64)
    ]
    return np.concatenate(parts)


def max_abs_diff(a, b, x: np.ndarray) -> float:
    """The largest |difference| between the outputs of models ``a`` and ``b`` on ``x``."""
    return float(np.max(np.abs(_outputs(a, x) - _outputs(b, x)))) if len(x) else 0.0


def random_inputs(model, n: int = RANDOM_EXAMPLES, seed: int = 0) -> np.ndarray:
    shape = [int(d) for d in model.inputs[0].shape[1:]]
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


def check_equal(src, dst, x: np.ndarray, where: str) -> float:
    """Compare the two models on ``x``; the difference, or ModelError beyond TOLERANCE."""
    diff = max_abs_diff(src, dst, x)
    if not diff <= TOLERANCE:
        raise ModelError(
            f"{where}: the tf_keras translation's outputs differ from the Keras 3 model's by "
            f"{diff:.3g} on {len(x)} examples (allowed: {TOLERANCE:g}); tfopt does not run on "
            "an approximation. Please report the model's layer types"
        )
    return diff


def origin(version: str, how: str, translated: bool, **figures) -> dict:
    """The ``keras`` entry of ``tfopt_model.json``."""
    return {"version": version, "from": how, "translated": translated, **figures}


def describe(entry: dict | None) -> str:
    """One line on which Keras a model came from (log, inspect report, model card)."""
    if not entry or entry.get("from") == "tf_keras":
        return f"Keras 2 (tf_keras {tfk.__version__})"
    head = f"Keras {entry.get('version', '?')} ({entry.get('from', 'file')})"
    if entry.get("translated"):
        head += (
            f", translated to tf_keras {tfk.__version__}: outputs equal within "
            f"{entry.get('max_abs_diff', 0):.2g} on {entry.get('checked_examples', '?')} examples"
        )
    elif entry.get("untranslatable"):
        u = entry["untranslatable"]
        head += (
            f", imported as a plain SavedModel: layer {u['layer']!r} ({u['class']}) has no "
            f"tf_keras equivalent ({u['why']})"
        )
    if "keras3_file" in entry:
        head += (
            f"; Keras 3 file: {entry['keras3_file']}"
            if entry["keras3_file"]
            else f"; no Keras 3 file: {entry.get('keras3_note', '')}"
        )
    return head


# ---- which Keras a model came from, from load to save -----------------------------------

_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tf_keras model -> origin
_LINEAGE: list[dict] = []  # origin of the last SavedModel loaded in this process


def report_entry(model, path: str | None) -> dict:
    """The ``keras`` entry of the inspect report: the model's Keras 3 origin (marked when a
    Keras 3 file was translated, or in a SavedModel's ``tfopt_model.json``), else tf_keras."""
    from tfopt.model_info import read_model_info

    entry = origin_of(model)
    if entry is None and path and os.path.isdir(path):
        entry = read_model_info(path).get(ORIGIN_KEY)
    return dict(entry) if entry else {"version": tfk.__version__, "from": "tf_keras"}


def mark(model, entry: dict) -> None:
    """Remember that the tf_keras ``model`` came from Keras 3 (its origin entry)."""
    _BUILT[model] = entry


def origin_of(model) -> dict | None:
    return _BUILT.get(model)


def note_loaded(info: dict) -> None:
    """A step loaded a SavedModel whose ``tfopt_model.json`` is ``info``: the model it saves
    next (the variant made from it) came from the same Keras."""
    _LINEAGE.clear()
    entry = info.get(ORIGIN_KEY)
    if entry and entry.get("translated") and str(entry.get("version", "")).startswith("3"):
        _LINEAGE.append({k: v for k, v in entry.items() if not k.startswith("keras3_")})


def forget() -> None:
    _LINEAGE.clear()


def take_origin(model, info: dict | None) -> dict | None:
    """The Keras 3 origin of a model about to be saved: given in ``info``, marked on the
    model, or that of the SavedModel this process loaded last (used once)."""
    given = (info or {}).get(ORIGIN_KEY)
    if given:
        return given
    found = _BUILT.get(model)
    if found:
        return found
    return _LINEAGE.pop() if _LINEAGE else None


def write_keras3(model, directory: str, entry: dict, objects: dict | None = None) -> dict:
    """Write ``model`` as a Keras 3 ``.keras`` file into ``directory`` when its layers allow
    it (outputs checked on random inputs); ``entry`` with where it is or why there is none."""
    entry = {k: v for k, v in entry.items() if not k.startswith("keras3_")}
    if not entry.get("translated"):
        return {**entry, "keras3_file": None, "keras3_note": "the model was not translated"}
    start = time.perf_counter()
    try:
        back = to_keras3(model, objects)
        diff = max_abs_diff(model, back, random_inputs(model))
        if not diff <= TOLERANCE:
            raise ModelError(f"its outputs differ by {diff:.3g} (allowed: {TOLERANCE:g})")
        back.save(os.path.join(directory, KERAS3_FILE))
    except ModelError as exc:
        log.warning("no Keras 3 file for %s: %s", model.name, exc)
        return {**entry, "keras3_file": None, "keras3_note": str(exc)}
    seconds = round(time.perf_counter() - start, 2)
    return {
        **entry,
        "keras3_file": KERAS3_FILE,
        "keras3_max_abs_diff": diff,
        "keras3_seconds": seconds,
    }
