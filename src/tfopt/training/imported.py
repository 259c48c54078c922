"""Bring your own model: import a trained classifier in place of training.

``import_model`` takes a tf_keras SavedModel directory, a ``.keras`` / ``.h5`` file (saved by
tf_keras or by Keras 3: ``keras3_import`` translates the latter to tf_keras, outputs
checked on the dataset's examples), or a plain TensorFlow SavedModel with a
``serving_default`` signature (local or ``gs://``),
checks that it fits the dataset before any other work, and writes it in tfopt's hand-off
form (``models.save_model``: ``x`` in, probabilities out), so every later step sees the
usual contract:

* an input adapter scales the dataset's values to the range the model expects;
* a softmax follows a model that returns logits;
* a plain SavedModel is called from a Keras layer: the post-training variants (TFLite)
  and distillation (as teacher) work on it; the weight-training techniques refuse it
  (``tfopt_model.json`` says ``trainable: false``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt import distribute, fsutil
from tfopt._keras import keras, tf
from tfopt.checks import check_choice, check_int
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError, ModelError
from tfopt.model_info import read_model_info
from tfopt.training import keras3, keras3_import, models
from tfopt.training import train as train_lib

log = logging.getLogger(__name__)

# name -> (low, high) of the values a model expects on its input
RANGES = {"uint8": (0.0, 255.0), "unit": (0.0, 1.0), "symmetric": (-1.0, 1.0)}
INPUT_RANGES = ("auto", *RANGES)  # auto: the model takes the dataset's values as they are
OUTPUTS = ("auto", "logits", "probabilities")
SOURCE_FORMATS = ("keras_saved_model", "keras_file", keras3_import.FORMAT, "saved_model")
PROBE_EXAMPLES = 32  # dataset examples the output kind is detected on
RANGE_EXAMPLES = 2048  # dataset examples the value range is detected on
PLAIN_REASON = "imported plain SavedModel has no Keras layers"


@dataclass(frozen=True)
class ImportConfig:
    """How to import.

    Attributes:
        input_range: the values the model expects: ``uint8`` (0-255), ``unit`` ([0, 1]),
            ``symmetric`` ([-1, 1]), or ``auto`` (the dataset's values as they are).
        output: ``logits``, ``probabilities``, or ``auto`` (detected on dataset examples:
            non-negative rows summing to 1 are probabilities).
        fine_tune_epochs: epochs of training on the dataset after import (0: none; the
            baseline is then the model as it came). Uses ``train``'s other settings.
        module_file: a module file whose ``custom_objects`` the model needs, or "".
        train: training settings of the fine-tuning.
    """

    input_range: str = "auto"
    output: str = "auto"
    fine_tune_epochs: int = 0
    module_file: str = ""
    train: train_lib.TrainConfig = field(
        default_factory=lambda: train_lib.TrainConfig(early_stopping_patience=0)
    )

    def __post_init__(self):
        if isinstance(self.train, dict):
            object.__setattr__(self, "train", train_lib.TrainConfig(**self.train))
        check_choice("ImportConfig", "input_range", self.input_range, INPUT_RANGES)
        check_choice("ImportConfig", "output", self.output, OUTPUTS)
        check_int("ImportConfig", "fine_tune_epochs", self.fine_tune_epochs, 0, 100_000)


@dataclass(frozen=True)
class ImportResult:
    model_path: str
    source_format: str
    output: str  # what the model returned: logits or probabilities
    data_range: tuple[float, float]
    model_range: tuple[float, float]
    trainable: bool
    params: int
    fine_tune_epochs: int
    metrics: dict
    keras: dict = field(default_factory=dict)  # Keras 3 origin (``keras3.origin``), or {}

    def to_dict(self) -> dict:
        return asdict(self)


class SavedModelCall(keras.layers.Layer):
    """Calls a plain SavedModel's signature: one float input, one output tensor."""

    def __init__(self, loaded, input_key: str, output_key: str, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self._loaded = loaded  # tracked: its variables are saved with the layer
        self._fn = loaded.signatures["serving_default"]
        # as the layer's (frozen) weights: counted in params, saved and revived with it
        self.source_variables = list(self._fn.variables)
        self.input_key, self.output_key = input_key, output_key

    def call(self, x):
        return self._fn(**{self.input_key: x})[self.output_key]


@contextlib.contextmanager
def _local_copy(uri: str) -> Iterator[str]:
    """``uri`` itself when local; a temporary copy of a ``gs://`` file or directory."""
    if not fsutil.is_remote(uri):
        yield uri
        return
    tmp = tempfile.mkdtemp(prefix="tfopt-import-")
    try:
        local = os.path.join(tmp, os.path.basename(uri.rstrip("/")))
        if tf.io.gfile.isdir(uri):
            for src_dir, _, files in tf.io.gfile.walk(uri):
                dst_dir = os.path.join(local, os.path.relpath(src_dir, uri))
                os.makedirs(dst_dir, exist_ok=True)
                for name in files:
                    tf.io.gfile.copy(f"{src_dir}/{name}", os.path.join(dst_dir, name))
        else:
            tf.io.gfile.copy(uri, local)
        yield local
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load_error(uri: str, exc: Exception, custom: dict) -> ModelError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    hint = ""
    if "Unknown layer" in str(exc) or "custom_objects" in str(exc):
        hint = (
            "; a custom layer must come from a module file's custom_objects (module_file="
            f"...; given: {sorted(custom) or 'none'})"
        )
    return ModelError(
        f"model_uri {uri}: cannot load the model ({type(exc).__name__}: {first}){hint}"
    )


def load_source(uri: str, local: str, custom: dict, objects: dict | None = None):
    """Load the model at ``local`` (the local copy of ``uri``): a tf_keras model, a Keras 3
    model (``keras3_import.Keras3Source``) or a plain SavedModel's loaded object, and its
    format (one of ``SOURCE_FORMATS``). ``objects``: the module file's tf_keras_objects."""
    if local.endswith(models.KERAS_FILE_SUFFIXES):
        if not os.path.isfile(local):
            raise ModelError(f"model_uri {uri}: no such file")
        version = keras3.file_version(local)
        if version:
            source = keras3_import.load(uri, local, version, custom, objects or {})
            return source, keras3_import.FORMAT
        try:
            return keras.models.load_model(
                local, compile=False, custom_objects=custom
            ), "keras_file"
        except Exception as exc:  # Keras raises many types for a bad file
            raise _load_error(uri, exc, custom) from None
    if not os.path.isdir(local):
        raise ModelError(
            f"model_uri {uri}: no such file or directory; allowed: a SavedModel directory, "
            "a .keras or a .h5 file"
        )
    if not os.path.exists(os.path.join(local, "saved_model.pb")):
        found = sorted(os.listdir(local))[:8]
        raise ModelError(
            f"model_uri {uri}: not a model: a directory without saved_model.pb (found: "
            f"{', '.join(found) or 'nothing'}); allowed: a SavedModel directory, a .keras or "
            "a .h5 file"
        )
    if os.path.exists(os.path.join(local, "keras_metadata.pb")):
        try:
            return keras.models.load_model(
                local, compile=False, custom_objects=custom
            ), "keras_saved_model"
        except Exception as exc:
            raise _load_error(uri, exc, custom) from None
    try:
        loaded = tf.saved_model.load(local)
    except Exception as exc:
        raise _load_error(uri, exc, custom) from None
    if "serving_default" not in loaded.signatures:
        raise ModelError(
            f"model_uri {uri}: a SavedModel without a serving_default signature (signatures: "
            f"{', '.join(loaded.signatures) or 'none'}); export one with "
            "tf.saved_model.save(obj, dir, signatures={'serving_default': fn})"
        )
    return loaded, "saved_model"


def _plain_keys(uri: str, loaded, feature_shape: tuple[int, ...]) -> tuple[str, str, tuple]:
    """The input and output key of a plain SavedModel's ``serving_default``, and its input
    shape (no batch)."""
    fn = loaded.signatures["serving_default"]
    args, kwargs = fn.structured_input_signature
    inputs = {**{str(i): s for i, s in enumerate(args)}, **kwargs}
    outputs = fn.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(
            f"model_uri {uri}: serving_default takes {sorted(inputs)} and returns "
            f"{sorted(outputs)}; tfopt imports a signature with one input (the features, "
            f"shape {tuple(feature_shape)}) and one output (the class scores)"
        )
    (in_key, spec), (out_key,) = next(iter(inputs.items())), tuple(outputs)
    if not spec.dtype.is_floating:
        raise ModelError(
            f"model_uri {uri}: serving_default input {in_key!r} is {spec.dtype.name}; "
            "tfopt feeds float features (allowed: a float input)"
        )
    return in_key, out_key, tuple(spec.shape[1:])


def _check_input(uri: str, shape: tuple, feature_shape: tuple[int, ...]) -> None:
    fits = len(shape) == len(feature_shape) and all(
        d is None or int(d) == f for d, f in zip(shape, feature_shape, strict=True)
    )
    if not fits:
        raise ModelError(
            f"model_uri {uri}: the model takes inputs of shape {tuple(shape)} but the dataset's "
            f"features have shape {tuple(feature_shape)}; allowed: a model whose input matches "
            "(None for any size)"
        )


def _check_classes(uri: str, out_shape: tuple, num_classes: int) -> None:
    units = out_shape[-1] if out_shape else None
    if units == 1 and num_classes != 1:
        raise ModelError(
            f"model_uri {uri}: the model has a single output unit (a regression or binary "
            f"score); tfopt imports classifiers with one output per class ({num_classes} "
            "for this dataset)"
        )
    if units != num_classes or len(out_shape) != 2:
        raise ModelError(
            f"model_uri {uri}: the model's output has shape {tuple(out_shape)} but the dataset "
            f"has {num_classes} classes; allowed: a classifier returning (batch, {num_classes})"
        )


def data_range(info: schema.DatasetInfo, sample: np.ndarray) -> tuple[float, float]:
    """The range of the dataset's values: declared in ``schema.json`` (``value_range``),
    0-255 for uint8 features, else the standard range the sample fills, else its own."""
    declared = info.extra.get("value_range")
    if declared:
        return float(declared[0]), float(declared[1])
    if info.feature_dtype == "uint8":
        return RANGES["uint8"]
    lo, hi = float(sample.min()), float(sample.max())
    for low, high in RANGES.values():
        if low <= lo and hi <= high and hi - lo >= (high - low) / 2:
            return low, high
    return lo, hi


def _adapter(src: tuple[float, float], dst: tuple[float, float]) -> keras.layers.Layer | None:
    if src == dst:
        return None
    scale = (dst[1] - dst[0]) / max(src[1] - src[0], 1e-12)
    return keras.layers.Rescaling(scale, offset=dst[0] - src[0] * scale, name="input_adapter")


def _is_probabilities(p: np.ndarray) -> bool:
    return bool(np.all(p >= -1e-6) and np.allclose(p.sum(axis=-1), 1.0, atol=1e-3))


def _wrap(core, feature_shape, adapter, softmax: bool) -> keras.Model:
    inputs = keras.Input(shape=tuple(feature_shape), name=models.INPUT_NAME, dtype="float32")
    x = adapter(inputs) if adapter is not None else inputs
    x = core(x)
    outputs = (
        keras.layers.Activation("softmax", dtype="float32", name=models.OUTPUT_NAME)(x)
        if softmax
        else x
    )
    return keras.Model(inputs, outputs, name="imported_classifier")


def _build(uri: str, source, fmt: str, info: schema.DatasetInfo, config: ImportConfig, scratch):
    """Check ``source`` against the dataset and wrap it; returns (model, output kind,
    data range, model range, Keras 3 origin or {})."""
    feature_shape = tuple(info.feature_shape)
    entry: dict = {}
    if fmt == "saved_model":
        in_key, out_key, in_shape = _plain_keys(uri, source, feature_shape)
        _check_input(uri, in_shape, feature_shape)
        out_shape = tuple(source.signatures["serving_default"].structured_outputs[out_key].shape)
        core = None  # made below, once the checks have passed
    elif fmt == keras3_import.FORMAT:
        in_shape, out_shape = keras3_import.shapes(source)
        _check_input(uri, in_shape, feature_shape)
        core = None
    else:
        if not isinstance(source, keras.Model) or len(source.inputs) != 1:
            raise ModelError(f"model_uri {uri}: tfopt imports a model with one input")
        if len(source.outputs) != 1:
            raise ModelError(
                f"model_uri {uri}: the model has {len(source.outputs)} outputs; tfopt imports "
                "a classifier with one output"
            )
        _check_input(uri, tuple(source.input_shape[1:]), feature_shape)
        out_shape = tuple(source.output_shape)
        core = source
    _check_classes(uri, out_shape, info.num_classes)
    sample, _ = input_pipeline.load_arrays(info, "train", limit=RANGE_EXAMPLES)
    src = data_range(info, sample)
    dst = src if config.input_range == "auto" else RANGES[config.input_range]
    adapter = _adapter(src, dst)
    if fmt == keras3_import.FORMAT:  # compared on the examples as the model will see them
        scale = (dst[1] - dst[0]) / max(src[1] - src[0], 1e-12)
        seen = sample.astype(np.float64) * scale + (dst[0] - src[0] * scale)
        core, entry = keras3_import.translate(uri, source, seen, scratch)
        if not entry["translated"]:  # the Keras 3 export, called as a plain SavedModel
            source = core
            in_key, out_key, _ = _plain_keys(uri, source, feature_shape)
            core = None
    sample = sample[:PROBE_EXAMPLES]
    if core is None:
        core = SavedModelCall(source, in_key, out_key, name="saved_model")
    probe = _wrap(core, feature_shape, adapter, softmax=False)
    scores = np.asarray(probe(sample.astype(np.float32), training=False), np.float64)
    if not np.all(np.isfinite(scores)):
        raise ModelError(
            f"model_uri {uri}: the model returns non-finite scores on dataset examples"
        )
    detected = "probabilities" if _is_probabilities(scores) else "logits"
    if config.output == "probabilities" and detected != "probabilities":
        raise ModelError(
            f"model_uri {uri}: output='probabilities' declared but the scores on "
            f"{len(sample)} dataset examples are not non-negative rows summing to 1 "
            "(use output='logits' or 'auto')"
        )
    kind = detected if config.output == "auto" else config.output
    return _wrap(core, feature_shape, adapter, kind == "logits"), kind, src, dst, entry


def import_model(
    model_uri: str,
    dataset_dir: str,
    output_path: str,
    config: ImportConfig = ImportConfig(),
) -> ImportResult:
    """Check the model at ``model_uri`` against the dataset, wrap it in tfopt's hand-off
    form and save it to ``output_path`` (atomically).

    Raises:
        ModelError: the model does not load, does not fit the dataset's features or
            classes, or is not a classifier; nothing is written then.
        ConfigError: fine-tuning asked of a plain SavedModel, or a bad module file.
    """
    if not isinstance(model_uri, str) or not model_uri.strip():
        raise ConfigError("import_model: model_uri is empty; expected a path or gs:// URI")
    info = schema.load_info(dataset_dir)
    custom, objects = {}, {}
    if config.module_file:
        from tfopt.training import module_file

        user = module_file.load_module(config.module_file)
        custom, objects = user.custom_objects, user.tf_keras_objects
    strategy = None
    if config.fine_tune_epochs:  # the model's variables must be made under the strategy
        keras.utils.set_random_seed(config.train.seed)
        strategy, _ = distribute.choose_strategy(config.train.memory_growth)
    # a plain SavedModel (or a Keras 3 export in scratch) is read until saved
    with _local_copy(model_uri.rstrip("/")) as local, tempfile.TemporaryDirectory() as scratch:
        with strategy.scope() if strategy else contextlib.nullcontext():
            source, fmt = load_source(model_uri, local, custom, objects)
            if fmt == "saved_model" and config.fine_tune_epochs:
                raise ConfigError(
                    f"fine_tune_epochs={config.fine_tune_epochs} is not allowed for "
                    f"{model_uri}: {PLAIN_REASON} to train (use 0)"
                )
            model, kind, src, dst, k3 = _build(model_uri, source, fmt, info, config, scratch)
        trainable = fmt != "saved_model" and k3.get("translated", True)
        reason = PLAIN_REASON if trainable or not k3 else keras3_import.plain_reason(k3)
        if not trainable and config.fine_tune_epochs:
            raise ConfigError(
                f"fine_tune_epochs={config.fine_tune_epochs} is not allowed for {model_uri}: "
                f"{reason} (use 0)"
            )
        metrics = _fine_tune(model, info, config, strategy) if strategy else {}
        model_info = {
            "source_uri": model_uri,
            "source_format": fmt,
            "trainable": trainable,
            "output": kind,
            "data_range": list(src),
            "model_range": list(dst),
            "fine_tune_epochs": config.fine_tune_epochs,
            **({"reason": reason} if not trainable else {}),
            **({keras3.ORIGIN_KEY: k3} if k3 else {}),
        }
        models.save_model(
            model,
            output_path,
            info.class_names,
            info=model_info,
            uint8_images=info.feature_dtype == "uint8",
        )
    if k3:  # with the Keras 3 file written beside the SavedModel, or why none
        k3 = read_model_info(output_path).get(keras3.ORIGIN_KEY, k3)
    which = keras3.describe(k3) if fmt != "saved_model" else "a plain SavedModel"
    log.info("imported %s (%s, %s) to %s; model from %s", model_uri, fmt, kind, output_path, which)
    return ImportResult(
        model_path=output_path,
        source_format=fmt,
        output=kind,
        data_range=src,
        model_range=dst,
        trainable=trainable,
        params=models.count_params(model),
        fine_tune_epochs=config.fine_tune_epochs,
        metrics=metrics,
        keras=k3,
    )


def _fine_tune(model: keras.Model, info: schema.DatasetInfo, config: ImportConfig, strategy):
    from dataclasses import replace

    train_config = replace(config.train, epochs=config.fine_tune_epochs)
    backup = tempfile.mkdtemp(prefix="tfopt-import-backup-")
    try:
        history, _ = train_lib.fit(model, info, train_config, strategy, backup)
    finally:
        shutil.rmtree(backup, ignore_errors=True)
    return {k: float(v[-1]) for k, v in history.history.items()}
