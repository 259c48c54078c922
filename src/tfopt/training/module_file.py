"""A user's model code, the TFX Trainer convention: a Python file (local or ``gs://``) with

* ``build_model(hparams, input_shape, num_classes)`` (required): an uncompiled classifier
  taking raw features on its input and returning probabilities, a ``tf_keras.Model`` or a
  Keras 3 functional / Sequential ``keras.Model`` (translated to tf_keras here, outputs
  compared on random inputs: ``tfopt.training.keras3``);
* ``build_student(hparams, input_shape, num_classes)`` (optional): the distillation student;
* ``custom_objects`` (optional): a dict of the custom layers / functions the models use,
  passed to ``tf_keras.models.load_model`` wherever a step loads them (and to Keras 3's
  loader for a Keras 3 ``model_uri``);
* ``tf_keras_objects`` (optional): for a user's own Keras 3 layers, name -> the tf_keras
  class taking the same config and weights (their translation; without one, such a layer
  has no tf_keras equivalent).

The model travels with its code: ``models.save_model`` puts a copy of the file into every
SavedModel built from its classes (``tfopt_module.py``), so every later step (and another
machine) loads it without the original file or a new image.
"""

from __future__ import annotations

import hashlib
import os
import sys
import traceback
import weakref
from dataclasses import dataclass, field
from types import ModuleType

from tfopt import fsutil
from tfopt._keras import keras, tf
from tfopt.errors import ConfigError, ModelError

MODULE_FILE_NAME = "tfopt_module.py"  # the copy inside a SavedModel; TF Serving ignores it


@dataclass(frozen=True)
class UserModule:
    """A loaded module file."""

    uri: str
    sha256: str
    source: bytes
    module: ModuleType
    custom_objects: dict = field(default_factory=dict)
    tf_keras_objects: dict = field(default_factory=dict)

    @property
    def keras3_objects(self) -> dict:
        """tf_keras class name -> the Keras 3 class it translates (the way back)."""
        return {
            cls.__name__: self.custom_objects[name]
            for name, cls in self.tf_keras_objects.items()
            if name in self.custom_objects and isinstance(cls, type)
        }

    def build_model(self, hparams: dict, input_shape: tuple[int, ...], num_classes: int):
        return self._call("build_model", hparams, input_shape, num_classes)

    @property
    def has_student(self) -> bool:
        return callable(getattr(self.module, "build_student", None))

    def build_student(self, hparams: dict, input_shape: tuple[int, ...], num_classes: int):
        return self._call("build_student", hparams, input_shape, num_classes)

    def _call(self, name: str, hparams, input_shape, num_classes):
        try:
            model = getattr(self.module, name)(dict(hparams), tuple(input_shape), num_classes)
        except (ConfigError, ModelError):
            raise
        except Exception as exc:  # the user's code may raise anything
            raise ModelError(
                f"{self.uri}: {name}(hparams, {tuple(input_shape)}, {num_classes}) raised "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if _is_keras3(model):
            model = self._translate(name, model, input_shape)
        if not isinstance(model, keras.Model):
            raise ModelError(
                f"{self.uri}: {name} returned {type(model).__module__}.{type(model).__name__}, "
                "not a Keras model (allowed: a tf_keras.Model, or a Keras 3 functional or "
                "Sequential keras.Model)"
            )
        _BUILT[model] = self
        return model

    def _translate(self, name: str, model, input_shape):
        """A Keras 3 model as tf_keras (checked on random inputs), marked as from Keras 3."""
        from tfopt.training import keras3

        where = f"{self.uri}: {name}"
        if not keras3.is_graph(model):
            raise keras3.subclassed_error(where, model)
        if not model.built:
            model.build((None, *input_shape))
        try:
            tfk_model = keras3.to_tf_keras(model, self.tf_keras_objects, where=where)
        except keras3.NoEquivalentError as exc:
            raise ModelError(
                f"{where} returned a Keras 3 model whose {exc}; tfopt trains tf_keras "
                "layers, so every layer needs one"
            ) from None
        x = keras3.random_inputs(model)
        diff = keras3.check_equal(model, tfk_model, x, where)
        entry = keras3.origin(
            keras3.k3().__version__, "module_file", True, max_abs_diff=diff, checked_examples=len(x)
        )
        keras3.mark(tfk_model, entry)
        return tfk_model


def _is_keras3(model) -> bool:
    """A Keras 3 model (checked only where Keras 3 is imported already: it made it)."""
    k3 = sys.modules.get("keras")
    return k3 is not None and isinstance(model, getattr(k3, "Model", ()))


# module name -> loaded module; the name is derived from the file's hash, so one file is
# imported once per process and its classes stay the same objects across loads.
_LOADED: dict[str, UserModule] = {}
_BUILT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> the module that built it


def _read(uri: str) -> bytes:
    if not uri.endswith(".py"):
        raise ConfigError(f"module_file={uri!r} is not allowed: expected a Python file (.py)")
    if not fsutil.exists(uri):
        raise ConfigError(f"module_file={uri!r}: no such file")
    with tf.io.gfile.GFile(uri, "rb") as fh:
        return fh.read()


def check_syntax(uri: str) -> None:
    """Fail like :func:`load_module` on a missing file or a syntax error, running nothing."""
    _compile(_read(uri), uri)


def _compile(source: bytes, uri: str):
    try:
        return compile(source, uri, "exec")
    except SyntaxError as exc:
        raise ConfigError(
            f"module_file {uri}: syntax error at line {exc.lineno}: {exc.msg}"
        ) from None


def load_module(uri: str) -> UserModule:
    """Import the module file at ``uri`` (local or ``gs://``) under a unique name.

    Raises:
        ConfigError: the file is missing, not ``.py``, has a syntax error (with the line),
            fails on import, lacks ``build_model`` or has a ``custom_objects`` that is no dict.
    """
    source = _read(uri)
    sha = hashlib.sha256(source).hexdigest()
    name = f"tfopt_user_module_{sha[:16]}"
    if name in _LOADED:
        return _LOADED[name]
    code = _compile(source, uri)
    module = ModuleType(name)
    module.__file__ = uri
    sys.modules[name] = module  # classes defined there must be importable by name (pickling)
    try:
        exec(code, module.__dict__)  # running the user's model code is the point
    except Exception as exc:
        del sys.modules[name]
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise ConfigError(
            f"module_file {uri}: importing it raised {type(exc).__name__}: {exc} "
            f"(line {where.lineno})"
        ) from None
    if not callable(getattr(module, "build_model", None)):
        del sys.modules[name]
        raise ConfigError(
            f"module_file {uri}: no build_model function; expected "
            "build_model(hparams, input_shape, num_classes) returning a tf_keras.Model or a "
            "Keras 3 functional / Sequential keras.Model"
        )
    custom = getattr(module, "custom_objects", {})
    if not isinstance(custom, dict):
        del sys.modules[name]
        raise ConfigError(
            f"module_file {uri}: custom_objects is {type(custom).__name__}, expected a dict "
            "of name -> class or function"
        )
    objects = getattr(module, "tf_keras_objects", {})
    if not isinstance(objects, dict):
        del sys.modules[name]
        raise ConfigError(
            f"module_file {uri}: tf_keras_objects is {type(objects).__name__}, expected a dict "
            "of Keras 3 layer name -> tf_keras class"
        )
    # the tf_keras classes under their own names too: a SavedModel of a translated model
    # names them so (Keras 3's loader ignores the extra entries)
    by_name = {c.__name__: c for c in objects.values() if isinstance(c, type)}
    # and known to tf_keras everywhere: cloning a nested model deserializes its layers
    # with no custom_objects at hand
    keras.utils.get_custom_objects().update(by_name)
    loaded = UserModule(
        uri=uri,
        sha256=sha,
        source=source,
        module=module,
        custom_objects={**by_name, **custom},
        tf_keras_objects=objects,
    )
    _LOADED[name] = loaded
    return loaded


def module_of(model: keras.Model) -> UserModule | None:
    """The module file that built ``model`` or whose classes it (or a layer in it) uses."""
    if model in _BUILT:
        return _BUILT[model]
    for obj in (model, *model.submodules):
        found = _LOADED.get(type(obj).__module__)
        if found is not None:
            return found
    return None


def bundled(model_path: str) -> UserModule | None:
    """The module file saved inside the SavedModel at ``model_path`` (None when none)."""
    path = os.path.join(model_path, MODULE_FILE_NAME)
    return load_module(path) if fsutil.exists(path) else None
