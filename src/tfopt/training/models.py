"""tf_keras model builders and the SavedModel hand-off between steps.

Every model takes raw features on input ``x`` (a Normalization layer inside
holds the training statistics) and returns class probabilities on output
``probabilities``, so TF Serving clients send raw data and every exported
artifact has the same explicit ``serving_default`` signature.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from tfopt import fsutil
from tfopt._keras import keras, tf
from tfopt.data.schema import DatasetInfo
from tfopt.errors import ModelError
from tfopt.model_info import DATA_FILE, MODEL_INFO_FILE, read_model_info
from tfopt.training import applications
from tfopt.training.model_config import APPLICATION_ARCHITECTURES, ModelConfig

log = logging.getLogger(__name__)

INPUT_NAME = "x"
OUTPUT_NAME = "probabilities"


def build_model(
    config: ModelConfig,
    input_shape: tuple[int, ...],
    num_classes: int,
    mean: float = 0.0,
    variance: float = 1.0,
    name: str | None = None,
) -> keras.Model:
    """Build an uncompiled classifier; ``mean``/``variance`` normalize the raw input."""
    inputs = keras.Input(shape=tuple(input_shape), name=INPUT_NAME, dtype="float32")
    x = keras.layers.Normalization(axis=None, mean=mean, variance=variance, name="normalize")(
        inputs
    )
    if config.arch in APPLICATION_ARCHITECTURES:
        x = applications.adapt_input(x, tuple(input_shape), config.arch)
        backbone = applications.build_backbone(config.arch, x, config.alpha)
        outputs = applications.build_head(backbone.output, num_classes, config.dropout, OUTPUT_NAME)
        model = keras.Model(inputs, outputs, name=name or f"{config.arch}_classifier")
        if config.weights_uri:
            applications.load_weights(model, config.weights_uri)
        return model
    if config.arch == "cnn":
        if len(input_shape) != 3:
            raise ModelError(
                f"arch 'cnn' needs image inputs (height, width, channels); "
                f"got shape {tuple(input_shape)}; use arch 'mlp'"
            )
        filters = config.width
        for i in range(config.depth):
            x = keras.layers.Conv2D(
                filters, 3, padding="same", activation="relu", name=f"conv{i + 1}"
            )(x)
            # Pool every 2nd conv (8x8 digits: once, to 4x4) and after every conv while
            # the map is >= 16 pixels: a 28x28 image then pools 28 -> 14 -> 7, so the
            # 2nd conv runs at 14x14 (4x fewer multiply-adds, a 4x smaller dense head).
            side = min(x.shape[1], x.shape[2])
            if side >= 16 or (side >= 4 and i % 2 == 1):
                x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
            filters *= 2
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(config.width * 4, activation="relu", name="dense1")(x)
    else:
        x = keras.layers.Flatten(name="flatten")(x)
        units = config.width
        for i in range(config.depth):
            x = keras.layers.Dense(units, activation="relu", name=f"dense{i + 1}")(x)
            units = max(units // 2, 8)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    outputs = keras.layers.Activation("softmax", dtype="float32", name=OUTPUT_NAME)(logits)
    model = keras.Model(inputs, outputs, name=name or f"{config.arch}_classifier")
    if config.weights_uri:
        applications.load_weights(model, config.weights_uri)
    return model


def count_params(model: keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.weights))


def serving_function(model: keras.Model):
    """The explicit ``serving_default`` signature: ``x`` in, ``probabilities`` out."""
    shape = [None, *model.input_shape[1:]]

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32, name=INPUT_NAME)])
    def serve(x):
        return {OUTPUT_NAME: tf.cast(model(x, training=False), tf.float32)}

    return serve


CLASSIFY_SIGNATURE = "classify"
CLASSIFY_METHOD = "tensorflow/serving/classify"


def classification_function(model: keras.Model, class_names: tuple[str, ...]):
    """TF Serving's Classify signature: serialized ``tf.Example`` on ``inputs`` (feature
    ``x``: the flattened float features), ``classes`` (the class names) and ``scores``."""
    shape = [int(d) for d in model.input_shape[1:]]
    names = tf.constant([str(c) for c in class_names])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(inputs):
        spec = {INPUT_NAME: tf.io.FixedLenFeature([int(np.prod(shape))], tf.float32)}
        x = tf.reshape(tf.io.parse_example(inputs, spec)[INPUT_NAME], [-1, *shape])
        scores = tf.cast(model(x, training=False), tf.float32)
        return {"classes": tf.tile(names[None], [tf.shape(scores)[0], 1]), "scores": scores}

    return classify


def save_model(
    model: keras.Model,
    path: str,
    class_names: tuple[str, ...] = (),
    info: dict | None = None,
    uint8_images: bool = False,
    data: dict | None = None,
) -> str:
    """Write ``model`` as a SavedModel at ``path`` atomically, with ``serving_default``
    (and, given the dataset's ``class_names``, a ``classify`` signature for TF Serving's
    Classify API and the vocabulary as ``assets/labels.txt``). ``uint8_images`` (the
    dataset stores uint8 images) adds ``serving_images`` and ``serving_encoded``, which
    take the raw or encoded image (``tfopt.training.signatures``).

    ``info`` goes to ``tfopt_model.json`` in the directory, ``data`` (the training data's
    record) to ``tfopt_data.json``. A model built from a module
    file's classes gets a copy of the file (``tfopt_module.py``) and its hash in the info,
    so :func:`load_model` finds its custom objects anywhere.
    """
    from tfopt.training import keras3, module_file
    from tfopt.training import signatures as extra

    user = module_file.module_of(model)
    info = {**(info or {}), **({"module_sha256": user.sha256} if user else {})}
    from_keras3 = keras3.take_origin(model, info)  # Keras 3 file beside it (issue 30)
    signatures = {"serving_default": serving_function(model)}
    if class_names:
        if len(class_names) != model.output_shape[-1]:
            raise ModelError(
                f"class_names has {len(class_names)} names but the model has "
                f"{model.output_shape[-1]} outputs"
            )
        signatures[CLASSIFY_SIGNATURE] = classification_function(model, tuple(class_names))
    if uint8_images and extra.image_shape(model):
        signatures.update(extra.image_functions(model, OUTPUT_NAME))
    with fsutil.atomic_dir(path) as tmp, extra.labels_asset(model, tuple(class_names)):
        model.save(tmp, save_format="tf", include_optimizer=False, signatures=signatures)
        if class_names:
            _set_method_name(tmp, CLASSIFY_SIGNATURE, CLASSIFY_METHOD)
        if user:
            with tf.io.gfile.GFile(os.path.join(tmp, module_file.MODULE_FILE_NAME), "wb") as fh:
                fh.write(user.source)
        if from_keras3:
            back = user.keras3_objects if user else {}
            info[keras3.ORIGIN_KEY] = keras3.write_keras3(model, tmp, from_keras3, back)
        if info:
            fsutil.write_json(os.path.join(tmp, MODEL_INFO_FILE), info)
        if data:
            fsutil.write_json(os.path.join(tmp, DATA_FILE), data)
    return path


def save_for_dataset(model: keras.Model, path: str, dataset: DatasetInfo) -> str:
    """:func:`save_model` with what a ``DatasetInfo`` says: its class names, the raw-image
    signatures when it stores uint8 images, and the data it was trained on (schema and
    statistics, ``tfopt_data.json``: what the next run's data is validated against)."""
    from tfopt.data.statistics import data_record

    return save_model(
        model,
        path,
        dataset.class_names,
        uint8_images=dataset.feature_dtype == "uint8",
        data=data_record(dataset),
    )


def save_for_conversion(model: keras.Model, path: str) -> str:
    """Only what the TFLite converter reads: ``serving_default`` and the variables.

    For a temporary SavedModel that is converted and thrown away (QAT, inspect). Keras'
    own SavedModel also traces every layer's call functions so that Keras can load it
    back: on a QAT-wrapped CNN that was 1.2-1.8 s to save and 0.8 s more to convert
    against 0.3 s, with the same TFLite bytes (measured in one process).
    """
    holder = tf.Module()
    holder.weights = list(model.variables)  # tracked, so the signature's captures are saved
    serve = serving_function(model)
    tf.saved_model.save(holder, path, signatures={"serving_default": serve})
    return path


def _set_method_name(saved_model_dir: str, signature: str, method: str) -> None:
    # TF2 exports every signature as Predict; TF Serving routes Classify by method_name.
    from tensorflow.core.protobuf import saved_model_pb2

    pb = os.path.join(saved_model_dir, "saved_model.pb")
    sm = saved_model_pb2.SavedModel.FromString(tf.io.gfile.GFile(pb, "rb").read())
    sm.meta_graphs[0].signature_def[signature].method_name = method
    with tf.io.gfile.GFile(pb, "wb") as fh:
        fh.write(sm.SerializeToString())


KERAS_FILE_SUFFIXES = (".keras", ".h5", ".hdf5")


def load_model(path: str, compile: bool = False, custom_objects: dict | None = None) -> keras.Model:
    """Load a tf_keras SavedModel (or ``.keras`` / ``.h5`` file) with a clear error otherwise.

    A SavedModel holding a module file (``tfopt_module.py``) is loaded with its
    ``custom_objects``. A ``.keras`` / ``.h5`` file saved by Keras 3 comes back translated to
    tf_keras (``tfopt.training.keras3``; ``custom_objects`` are then Keras 3 classes).
    """
    custom = dict(custom_objects or {})
    if path.endswith(KERAS_FILE_SUFFIXES):
        if not fsutil.exists(path):
            raise ModelError(f"{path}: no such model file")
        from tfopt.training import keras3

        version = None if fsutil.is_remote(path) else keras3.file_version(path)
        if version:  # translated to tf_keras, compared on random inputs
            return keras3.load_translated(path, custom, version)
    elif not fsutil.exists(os.path.join(path, "saved_model.pb")):
        raise ModelError(f"{path}: not a SavedModel directory (no saved_model.pb)")
    else:
        from tfopt.training import keras3, module_file

        user = module_file.bundled(path)
        custom = {**(user.custom_objects if user else {}), **custom}
        keras3.note_loaded(read_model_info(path))
    try:
        return keras.models.load_model(path, compile=compile, custom_objects=custom or None)
    except Exception as exc:  # TF raises many types for a corrupt model
        raise ModelError(
            f"{path}: cannot load the model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def clone_model(model: keras.Model) -> keras.Model:
    """A copy with the same weights, so the input model is never modified."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def check_compatible(
    model: keras.Model, feature_shape: tuple[int, ...], num_classes: int, where: str
) -> None:
    """Fail when a model's input or output does not fit the dataset."""
    in_shape = tuple(model.input_shape[1:])
    out = model.output_shape[-1]
    if in_shape != tuple(feature_shape):
        raise ModelError(
            f"{where}: model input shape {in_shape} does not match the dataset's "
            f"feature shape {tuple(feature_shape)}"
        )
    if out != num_classes:
        raise ModelError(
            f"{where}: model has {out} outputs but the dataset has {num_classes} classes"
        )
