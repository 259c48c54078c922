"""One Keras 3 layer as tf_keras layers, and back: the per-layer half of ``keras3``.

A built-in layer maps to the class of the same name in the other Keras, from its
``get_config()``: dtype policies become plain dtype names, initializers, regularizers and
constraints are rebuilt from their class name and the settings the other class takes, and
a setting the other class does not take is dropped only while it holds its neutral value
(``lora_rank=None``); any other value has no equivalent and is named. Activations are
mapped by name (``silu`` is tf_keras' ``swish``); those tf_keras has no name for
(``relu6``, ``hard_silu`` ...) become a ``ReLU`` layer or TensorFlow ops after the layer.
Keras 3 operations in a functional graph (``x + 3.0``) become the same TensorFlow ops
(tf_keras' ``TFOpLambda``), and back. Weights are copied after the graph is built
(``keras3.copy_weights``); the whole model's outputs are compared there too.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from tfopt._keras import keras as tfk
from tfopt._keras import tf
from tfopt.errors import ModelError


def k3() -> Any:
    """Keras 3. ``TF_USE_LEGACY_KERAS`` (set by ``tfopt._keras``) redirects only
    ``tf.keras``: the ``keras`` package itself is Keras 3 (measured: keras 3.15.1 beside
    tf_keras 2.21 in one process). Imported on first use (about 1.4 s here)."""
    try:
        module = importlib.import_module("keras")
    except Exception as exc:  # a backend that does not import, a broken install
        raise ModelError(
            f"Keras 3 does not import here ({type(exc).__name__}: {exc}); tfopt reads Keras 3 "
            "models with the tensorflow backend: unset KERAS_BACKEND or set it to tensorflow"
        ) from None
    if not str(module.__version__).startswith("3"):
        raise ModelError(f"the installed keras is {module.__version__}, not Keras 3")
    backend = module.backend.backend()
    if backend != "tensorflow":
        raise ModelError(
            f"Keras 3 runs on the {backend!r} backend here (KERAS_BACKEND); tfopt reads Keras 3 "
            "models with the tensorflow backend: unset KERAS_BACKEND or set it to tensorflow"
        )
    return module


class NoEquivalentError(ModelError):
    """A layer (or the model) with no equivalent in the other Keras."""

    def __init__(self, layer: str, cls: str, why: str):
        self.layer, self.cls, self.why = layer, cls, why
        super().__init__(f"layer {layer!r} ({cls}): {why}")


# Settings tf_keras' Layer takes besides a class's own arguments (base_layer.py).
_BASE_KWARGS = {
    "name",
    "trainable",
    "dtype",
    "dynamic",
    "input_dim",
    "input_shape",
    "batch_input_shape",
    "batch_size",
    "weights",
    "activity_regularizer",
    "autocast",
    "implementation",
}
# activation names: the same function in both (checked numerically in the tests)
_SAME_ACTIVATIONS = {
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
    "linear",
    "elu",
    "selu",
    "softplus",
    "softsign",
    "exponential",
    "gelu",
    "mish",
}
_TO_TFK_ACTIVATIONS = {"silu": "swish", "swish": "swish"}
_TO_K3_ACTIVATIONS = {"swish": "silu"}
# Keras 3 activations tf_keras has no name for: made of a layer and TensorFlow ops
_SPLIT_ACTIVATIONS = ("relu6", "leaky_relu", "hard_sigmoid", "hard_silu", "hard_swish")
_OP_KINDS = ("initializer", "regularizer", "constraint")


def _neutral(value) -> bool:
    return value is None or value is False or value == 0 or value in ([], (), {}, "")


def _signature(cls) -> dict[str, Any]:
    """The constructor arguments of ``cls`` and their defaults, those of the base classes
    its ``**kwargs`` reach included (the base Layer's aside)."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass.__name__ in ("Layer", "Operation", "object"):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        for p in params:
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                found.setdefault(p.name, p.default)
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return found


def _at_default(value, default) -> bool:
    """``value`` is neutral or the source class's default (dropping it changes nothing)."""
    if _neutral(value):
        return True
    try:
        return bool(value == default)
    except Exception:  # arrays and other values without a plain ==
        return False


# settings whose value is what the other Keras does without them
_NEUTRAL_SETTINGS = {"data_format": "channels_last"}
_NOTHING = object()
# settings one Keras names differently: (class, name in Keras 3, name in tf_keras)
_RENAMED = (("LeakyReLU", "negative_slope", "alpha"),)


def _rename(cls_name: str, config: dict, to_keras3: bool) -> dict:
    for cls, k3_name, tfk_name in _RENAMED:
        old, new = (tfk_name, k3_name) if to_keras3 else (k3_name, tfk_name)
        if cls == cls_name and old in config:
            config[new] = config.pop(old)
    return config


def _dtype(value, where: tuple[str, str]):
    """A dtype policy (either Keras' serialized form) as the plain policy name."""
    if isinstance(value, dict):
        cls = value.get("class_name", "")
        if "Quantized" in cls or "Map" in cls:
            raise NoEquivalentError(*where, f"a quantized layer (dtype policy {cls})")
        return (value.get("config") or {}).get("name", "float32")
    return value


def _object(api, kind: str, value, where: tuple[str, str]):
    """An initializer / regularizer / constraint of the other Keras (``api``) from its
    serialized form; None when an initializer has no equivalent (the weights are copied)."""
    if value is None or isinstance(value, str):
        return value
    module = getattr(api, f"{kind}s")
    cls_name = value.get("class_name") if isinstance(value, dict) else None
    cls = getattr(module, str(cls_name), None) if cls_name else None
    if not isinstance(cls, type):
        if kind == "initializer":
            return None  # the weights are copied: only a re-initialization would differ
        raise NoEquivalentError(*where, f"{kind} {cls_name or value!r} has no equivalent")
    config = dict(value.get("config") or {})
    accepted = set(_signature(cls))
    unknown = {k: v for k, v in config.items() if k not in accepted}
    if any(not _neutral(v) for v in unknown.values()) and kind != "initializer":
        raise NoEquivalentError(
            *where, f"{kind} {cls_name} setting(s) {unknown} have no equivalent"
        )
    return cls(**{k: v for k, v in config.items() if k in accepted})


def _convert(config: dict, src_cls, cls, api, where: tuple[str, str]) -> dict:
    """``config`` (one Keras' ``get_config`` of a ``src_cls``) as constructor arguments of
    ``cls`` (the other Keras' class)."""
    accepted = set(_signature(cls)) | _BASE_KWARGS
    defaults = _signature(src_cls)
    out = {}
    for key, value in config.items():
        if key == "dtype":
            value = _dtype(value, where)
        elif any(key.endswith(f"_{kind}") for kind in _OP_KINDS):
            kind = key.rsplit("_", 1)[1]
            value = _object(api, kind, value, where)
            if value is None and kind == "initializer":
                continue
        if key not in accepted:
            if _NEUTRAL_SETTINGS.get(key, _NOTHING) == value:
                continue
            if key.endswith("_initializer") or _at_default(
                value, defaults.get(key, inspect.Parameter.empty)
            ):
                continue  # an initializer only matters to a re-initialization
            raise NoEquivalentError(*where, f"setting {key}={value!r} has no equivalent")
        out[key] = value
    return out


def _activation_to_tfk(value, where: tuple[str, str]) -> tuple[str, str | None]:
    """A Keras 3 activation as (tf_keras activation, activation split after the layer)."""
    if not isinstance(value, str):
        raise NoEquivalentError(
            *where, f"activation {value!r} (a custom function) has no equivalent"
        )
    if value in _SAME_ACTIVATIONS:
        return value, None
    if value in _TO_TFK_ACTIVATIONS:
        return _TO_TFK_ACTIVATIONS[value], None
    if value in _SPLIT_ACTIVATIONS:
        return "linear", value
    raise NoEquivalentError(*where, f"activation {value!r} has no tf_keras equivalent")


def _split_tfk(kind: str, name: str) -> Callable:
    """The tf_keras layers / ops computing a Keras 3 activation tf_keras has no name for."""
    relu6 = tfk.layers.ReLU(6.0, name=name)
    if kind == "relu6":
        return relu6
    if kind == "leaky_relu":
        return tfk.layers.LeakyReLU(alpha=0.2, name=name)
    if kind == "hard_sigmoid":  # Keras 3's: relu6(x + 3) / 6 (tf_keras' is 0.2 x + 0.5)
        return lambda x: tf.math.truediv(relu6(tf.math.add(x, 3.0)), 6.0)
    return lambda x: tf.math.multiply(x, tf.math.truediv(relu6(tf.math.add(x, 3.0)), 6.0))


def _chain(first: Callable, then: Callable | None) -> Callable:
    return first if then is None else (lambda *a, **kw: then(first(*a, **kw)))


# Keras 3 operations (keras.ops in a functional graph) <-> TensorFlow functions
_K3_OPS = {
    "Add": "math.add",
    "Subtract": "math.subtract",
    "Multiply": "math.multiply",
    "Divide": "math.truediv",
    "TrueDivide": "math.truediv",
    "Maximum": "math.maximum",
    "Minimum": "math.minimum",
    "Negative": "math.negative",
    "Relu": "nn.relu",
    "Relu6": "nn.relu6",
    "Sigmoid": "math.sigmoid",
    "Silu": "nn.silu",
    "Tanh": "math.tanh",
}
_TF_TO_K3_OPS = {
    "__operators__.add": "add",
    "math.add": "add",
    "math.subtract": "subtract",
    "math.multiply": "multiply",
    "math.truediv": "divide",
    "math.maximum": "maximum",
    "math.minimum": "minimum",
    "math.negative": "negative",
    "nn.relu": "relu",
    "nn.relu6": "relu6",
    "math.sigmoid": "sigmoid",
    "nn.silu": "silu",
    "math.tanh": "tanh",
}


def _tf_function(path: str) -> Callable:
    obj: Any = tf
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def is_builtin(obj, package: str) -> bool:
    return type(obj).__module__.startswith(f"{package}.src.")


def to_tfk(src, objects: dict) -> tuple[Callable, list[tuple[Any, Any]]]:
    """A Keras 3 layer or operation as a tf_keras callable, and the (Keras 3, tf_keras)
    layer pairs whose weights are to be copied once the graph is built.

    ``objects``: name -> tf_keras class, for the user's own Keras 3 layers.
    """
    km = k3()
    cls_name = type(src).__name__
    where = (src.name, cls_name)
    if not isinstance(src, km.layers.Layer):  # a keras.ops operation
        path = _K3_OPS.get(cls_name) if is_builtin(src, "keras") else None
        if path is None or getattr(src, "get_config", dict)().keys() - {"name"}:
            raise NoEquivalentError(*where, "a Keras 3 operation with no tf_keras equivalent")
        return _tf_function(path), []
    if is_builtin(src, "keras"):
        cls = getattr(tfk.layers, cls_name, None)
        if cls is None:
            raise NoEquivalentError(*where, "no tf_keras layer of that name")
    else:
        registered = km.saving.get_registered_name(type(src))
        cls = objects.get(registered) or objects.get(cls_name)
        if cls is None:
            raise NoEquivalentError(
                *where,
                "a custom Keras 3 layer with no tf_keras equivalent (a module file's "
                f"tf_keras_objects may map {cls_name!r} to a tf_keras class taking the same "
                "config and weights)",
            )
    config = src.get_config()
    post = None
    if "activation" in config:
        config["activation"], split = _activation_to_tfk(config["activation"], where)
        if split is not None and cls_name == "Activation":
            return _split_tfk(split, src.name), []
        post = _split_tfk(split, f"{src.name}_{split}") if split else None
    weights_copied = True
    if cls_name == "Normalization" and config.get("mean") is None and src.weights:
        # adapted statistics: tf_keras takes them as constants (its variables differ)
        config["mean"] = np.asarray(src.adapt_mean)
        config["variance"] = np.asarray(src.adapt_variance)
        weights_copied = False
    kwargs = _convert(_rename(cls_name, config, False), type(src), cls, tfk, where)
    try:
        dst = cls(**kwargs)
    except Exception as exc:  # a class rejects a value: no equivalent
        raise NoEquivalentError(*where, f"tf_keras rejects its settings ({exc})") from None
    return _chain(dst, post), [(src, dst)] if weights_copied else []


def to_k3(src, objects: dict) -> tuple[Callable, list[tuple[Any, Any]]]:
    """A tf_keras layer as a Keras 3 callable (the way back), and the weight pairs.

    ``objects``: tf_keras class name -> Keras 3 class, for the user's own layers.
    """
    km = k3()
    cls_name = type(src).__name__
    where = (src.name, cls_name)
    if cls_name == "TFOpLambda":
        name = _TF_TO_K3_OPS.get(src.get_config().get("function", ""))
        if name is None:
            raise NoEquivalentError(*where, "a TensorFlow op with no Keras 3 equivalent")
        op = getattr(km.ops, name)

        def call(*args, **kwargs):
            kwargs.pop("name", None)
            extra = [kwargs.pop(k) for k in ("y",) if k in kwargs]
            if kwargs:
                raise NoEquivalentError(*where, f"arguments {sorted(kwargs)} have no equivalent")
            return op(*args, *extra)

        return call, []
    if is_builtin(src, "tf_keras"):
        cls = getattr(km.layers, cls_name, None)
    else:
        cls = objects.get(cls_name)
    if cls is None:
        raise NoEquivalentError(*where, "no Keras 3 layer of that name")
    config = src.get_config()
    if "activation" in config:
        act = config["activation"]
        if not isinstance(act, str) or (
            act not in _SAME_ACTIVATIONS and act not in _TO_K3_ACTIVATIONS
        ):
            raise NoEquivalentError(*where, f"activation {act!r} has no Keras 3 equivalent")
        config["activation"] = _TO_K3_ACTIVATIONS.get(act, act)
    for key in ("mean", "variance"):  # Normalization's constants (arrays or lists)
        if isinstance(config.get(key), np.ndarray):
            config[key] = config[key].tolist()
    axis = config.get("axis")
    if not isinstance(axis, (int, type(None))):  # tf_keras keeps a tracked list
        config["axis"] = list(axis)
        if cls_name == "BatchNormalization" and len(config["axis"]) == 1:
            config["axis"] = config["axis"][0]
    kwargs = _convert(_rename(cls_name, config, True), type(src), cls, km, where)
    try:
        dst = cls(**kwargs)
    except Exception as exc:
        raise NoEquivalentError(*where, f"Keras 3 rejects its settings ({exc})") from None
    return dst, [(src, dst)]
