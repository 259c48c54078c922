"""What the compression techniques share: loading a model for compression, fine-tuning,
kernel sparsity, and the settings several techniques declare alike."""

from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass, field

import numpy as np

from tfopt import model_info, registry
from tfopt._keras import keras, tf
from tfopt.data import input_pipeline, schema
from tfopt.data.integrity import reporting_corruption
from tfopt.errors import ConfigError, ModelError
from tfopt.settings import check_settings, setting
from tfopt.training import models
from tfopt.training.divergence import StopOnDivergence

log = logging.getLogger(__name__)


# --- settings several techniques declare (one pipeline parameter each: declared alike) ----


def seed_setting():
    """The ``seed`` setting (pipeline parameter ``seed``)."""
    return setting(42, "Seed of the fine-tuning's shuffles.", low=0, high=2**31 - 1, param="seed")


def batch_size_setting(what: str = "Fine-tuning"):
    """A ``batch_size`` setting (64)."""
    return setting(64, f"{what} batch size.", low=1, high=1 << 20)


def learning_rate_setting(default: float, what: str = "Fine-tuning"):
    """A ``learning_rate`` setting (Adam's)."""
    return setting(default, f"{what} learning rate.", low=0.0, high=10.0, low_open=True)


def representative_samples_setting():
    """The ``representative_samples`` setting of an int8 conversion (TFLite, QAT)."""
    return setting(
        200,
        "Calibration examples drawn from the train split for int8.",
        low=1,
        high=100_000,
        param="representative_samples",
    )


def max_accuracy_drop_setting(what: str):
    """The ``max_accuracy_drop`` setting (pipeline parameter shared with selection)."""
    return setting(
        1.0,
        f"{what}: accuracy points the result may lose against its base on the validation "
        "split; -1 (any value < 0) turns the check off.",
        low=-1.0,
        high=100.0,
        param="max_accuracy_drop",
    )


# the search over a technique's strength knob (compression/search.py, issue 32)
def search_setting():
    return setting(
        False,
        "Search the technique's strength knob for the strongest setting that keeps the "
        "validation accuracy drop within max_accuracy_drop (short trials, then the winner "
        "fine-tuned in full).",
        param="search",
    )


def search_trials_setting():
    return setting(
        6, "Most trials of a technique's search.", low=1, high=100, param="search_trials"
    )


def search_minutes_setting():
    return setting(
        0.0,
        "Minutes a technique's search may take (its trials stop when they are spent; 0 = "
        "only search_trials bounds it).",
        low=0.0,
        high=10_000.0,
        param="search_budget_minutes",
    )


def objective_setting():
    return setting(
        "smallest",
        "The selection's objective (smallest, fastest or most_accurate): a technique "
        "searches only when a stronger setting can win on it.",
        choices=registry.SELECTION_OBJECTIVES,
        param="objective",
    )


@dataclass(frozen=True)
class Searchable:
    """The settings every technique with a searched strength knob shares (its config
    derives from this; ``compression/search.py`` reads them)."""

    search: bool = search_setting()
    objective: str = objective_setting()
    search_trials: int = search_trials_setting()
    search_minutes: float = search_minutes_setting()
    max_accuracy_drop: float = max_accuracy_drop_setting("With search")
    # Set by the search on its trials, not a setting: the search judges a trial on the
    # validation split, so the technique reads no test split of its own
    trial: bool = field(default=False, repr=False, compare=False)

    @property
    def fixed(self) -> str:
        """Why another setting decides what the knob would ("": the knob does)."""
        return ""


def check_with_names(config, *fields: str) -> None:
    """``check_settings(config)`` where each of ``fields`` is a list of layer names: text
    for KFP (comma-separated, "" = none) or a sequence of names in code; stored as a tuple."""
    for name in fields:
        value = getattr(config, name)
        object.__setattr__(config, name, value if isinstance(value, str) else ",".join(value))
    check_settings(config)
    for name in fields:
        names = tuple(n.strip() for n in getattr(config, name).split(",") if n.strip())
        object.__setattr__(config, name, names)


def load_for_compression(model_path: str, dataset_dir: str, where: str):
    """Load ``model_path`` (a copy: the file on disk is only read) and the dataset info.

    Nested models (a backbone inside a classifier) come back flattened, so every
    technique sees the backbone's layers.
    """
    info = schema.load_info(dataset_dir)
    origin = model_info.read_model_info(model_path)
    if origin.get("trainable") is False:  # an imported plain SavedModel (training.imported)
        raise ModelError(f"{where}: {origin.get('reason', 'the model is not trainable')}")
    model = models.load_model(model_path)
    models.check_compatible(model, info.feature_shape, info.num_classes, where)
    return flatten_nested(models.clone_model(model)), info


def graph_links(model: keras.Model) -> tuple[dict[str, list], dict[str, int]]:
    """Per layer name of ``model``'s own graph: the layers feeding it, and how many
    calls consume its output (a layer may sit in other graphs too)."""
    inbound: dict[str, list] = {la.name: [] for la in model.layers}
    consumers: dict[str, int] = {la.name: 0 for la in model.layers}
    for nodes in model._nodes_by_depth.values():
        for node in nodes:
            if node.is_input:
                continue
            feeding = tf.nest.flatten(node.inbound_layers)
            inbound[node.layer.name] = feeding
            for layer in feeding:
                consumers[layer.name] = consumers.get(layer.name, 0) + 1
    return inbound, consumers


def layer_params(layer) -> int:
    return int(sum(np.prod(w.shape) for w in layer.weights))


def _is_nested(layer) -> bool:
    return isinstance(layer, keras.Model) and bool(getattr(layer, "_is_graph_network", False))


def flatten_nested(model: keras.Model) -> keras.Model:
    """One functional graph with the layers of nested functional / Sequential models inlined.

    The layers themselves are reused (their weights with them); one whose name the flat
    graph already uses is copied under a numbered name with the same weights. A
    model without nested models is returned as is. Keyword arguments of the call of a
    nested model (``training=False`` of a frozen backbone) do not reach its layers: they
    follow the learning phase like every other layer, and ``trainable`` flags are kept.

    Raises:
        ModelError: ``model`` is subclassed (no graph to flatten) around a nested model.
    """
    if not any(_is_nested(layer) for layer in model.layers):
        return model
    if not getattr(model, "_is_graph_network", False):
        raise ModelError(
            f"model {model.name!r} is a subclassed model holding nested models: tfopt can "
            "only flatten functional / Sequential models"
        )
    taken: set[str] = set()
    inputs = [keras.Input(type_spec=t.type_spec, name=t.node.layer.name) for t in model.inputs]
    taken.update(i.node.layer.name for i in inputs)
    outputs = _inline(model, inputs, taken, {})
    flat = keras.Model(inputs, outputs, name=model.name)
    log.info("flattened nested model(s) of %s: %d layers", model.name, len(flat.layers))
    return flat


def _call_inlined(layer, args, kwargs, taken: set[str], copies: dict):
    """Call ``layer`` (or its renamed copy: names are unique in a model) in the flat graph;
    a layer called at several places keeps one set of weights."""
    first = id(layer) not in copies
    if first:
        if layer.name in taken:
            config = {**layer.get_config(), "name": f"{layer.name}_{len(taken)}"}
            copies[id(layer)] = layer.__class__.from_config(config)
        else:
            copies[id(layer)] = layer
        taken.add(copies[id(layer)].name)
    own = copies[id(layer)]
    out = own(*args, **kwargs)
    if first and own is not layer:
        own.set_weights(layer.get_weights())
    return out


def _inline(graph: keras.Model, inputs: list, taken: set[str], copies: dict) -> object:
    """Run ``graph``'s nodes on ``inputs`` (outputs nested as ``graph``'s are)."""
    tensors = {id(t): x for t, x in zip(graph.inputs, inputs, strict=True)}
    nodes_by_depth = graph._nodes_by_depth
    for depth in sorted(nodes_by_depth, reverse=True):
        for node in nodes_by_depth[depth]:
            if node.is_input:
                continue
            flat = [tensors.get(id(a), a) for a in node._flat_arguments]
            args, kwargs = tf.nest.pack_sequence_as(
                (node.call_args, list(node.call_kwargs.values())), flat
            )
            kwargs = dict(zip(node.call_kwargs.keys(), kwargs, strict=True))
            layer = node.layer
            if _is_nested(layer):
                out = _inline(layer, tf.nest.flatten(args[0]), taken, copies)
            else:
                out = _call_inlined(layer, args, kwargs, taken, copies)
            for t, y in zip(tf.nest.flatten(node.outputs), tf.nest.flatten(out), strict=True):
                tensors[id(t)] = y
    return tf.nest.pack_sequence_as(
        graph._nested_outputs,
        [tensors[id(t)] for t in tf.nest.flatten(graph.outputs)],
    )


def finetune(
    model: keras.Model,
    info: schema.DatasetInfo,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    callbacks=None,
    loss=None,
    tensorboard_dir: str | None = None,
    teacher: Teacher | None = None,
    cosine: bool = False,
) -> dict:
    """Compile and fit ``model`` for a fixed number of epochs on the train split.

    No early stopping: restoring "best" weights would undo a pruning schedule.
    Returns the last epoch's metrics (train and validation). ``tensorboard_dir``
    receives TensorBoard scalars of the fine-tuning. With ``teacher``, the model learns
    the teacher's outputs as well as the labels (``distiller.Distiller``); ``cosine``
    decays the learning rate to zero over the fine-tuning (a model that lost part of
    itself recovers more when the last epochs take small steps).
    """
    callbacks = [StopOnDivergence("fine-tuning", learning_rate), *(callbacks or [])]
    if tensorboard_dir:
        callbacks.append(keras.callbacks.TensorBoard(tensorboard_dir, write_graph=False))
    keras.utils.set_random_seed(seed)
    rate = (
        keras.optimizers.schedules.CosineDecay(
            learning_rate, max(1, epochs * steps_per_epoch(info, batch_size))
        )
        if cosine
        else learning_rate
    )
    loss = loss or keras.losses.SparseCategoricalCrossentropy()
    model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss, metrics=["accuracy"])
    train_ds = input_pipeline.make_dataset(
        info, "train", input_pipeline.InputConfig(batch_size=batch_size, shuffle=True, seed=seed)
    )
    val_ds = (
        input_pipeline.make_dataset(info, "validation", input_pipeline.InputConfig(batch_size=256))
        if info.counts.get("validation")
        else None
    )
    fit = model
    if teacher is not None:
        from tfopt.compression.distiller import Distiller

        fit = Distiller(model, teacher.model, teacher.temperature, 1.0 - teacher.weight)
        fit.compile(optimizer=keras.optimizers.Adam(rate))
        train_ds = train_ds.map(lambda x, y: (x, y, tf.ones_like(y, tf.float32)))
    with reporting_corruption(info, ["train", "validation"]):
        history = fit.fit(
            train_ds,
            validation_data=None if teacher is not None else val_ds,
            epochs=epochs,
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
        )
        metrics = {k: float(v[-1]) for k, v in history.history.items()}
        if teacher is not None and val_ds is not None:  # the student alone, as keras reports it
            values = model.evaluate(val_ds, verbose=0, return_dict=True)
            metrics.update({f"val_{k}": float(v) for k, v in values.items()})
    return metrics


@dataclass(frozen=True)
class Teacher:
    """A model to fine-tune against: its outputs at ``temperature`` weigh ``weight``, the
    labels the rest (Hinton et al.; ``distiller.Distiller``)."""

    model: keras.Model
    weight: float = 0.5
    temperature: float = 4.0


AUTO = "auto"  # keep_dense default: the first conv layer and the output layer


def kept_dense(model: keras.Model, keep_dense: tuple[str, ...], owner: str) -> set[str]:
    """The layers a ``keep_dense`` setting names (``owner.keep_dense`` in errors): layer
    names, and ``auto`` for the first Conv2D layer and the output layer (the last layer
    with a kernel)."""
    with_kernel = [layer for layer in model.layers if kernel_of(layer) is not None]
    names = {layer.name for layer in model.layers}
    keep = set()
    for entry in keep_dense:
        if entry == AUTO:
            convs = [la for la in with_kernel if isinstance(la, keras.layers.Conv2D)]
            if convs:
                keep.add(convs[0].name)
            if with_kernel:
                keep.add(with_kernel[-1].name)
        elif entry not in names:
            raise ConfigError(
                f"{owner}.keep_dense names layer {entry!r}, which the model "
                f"does not have; layers: {', '.join(sorted(names))}"
            )
        else:
            keep.add(entry)
    return keep


def steps_per_epoch(info: schema.DatasetInfo, batch_size: int) -> int:
    return max(1, math.ceil(info.counts["train"] / batch_size))


def kernel_of(layer) -> tf.Variable | None:
    """The main weight matrix of a Dense/Conv layer (``None`` for other layers)."""
    kernel = getattr(layer, "kernel", None)
    if kernel is None:
        kernel = getattr(layer, "depthwise_kernel", None)
    return kernel


def kernel_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of exact zeros in each layer's kernel (layers with a kernel only)."""
    out = {}
    for layer in model.layers:
        kernel = kernel_of(layer)
        if kernel is not None:
            w = kernel.numpy()
            out[layer.name] = float(np.mean(w == 0))
    return out


def model_sparsity(model: keras.Model) -> float:
    """Fraction of exact zeros over every weight of the model."""
    weights = model.get_weights()
    total = sum(w.size for w in weights)
    return float(sum(int(np.sum(w == 0)) for w in weights) / max(total, 1))
