"""Magnitude pruning with tfmot: schedule, optional 2:4 structure, fine-tuning, strip.

``prune_model`` loads any tf_keras SavedModel, copies it (the input is never
modified; nested models flattened), wraps the prunable layers (Conv, Dense and
DepthwiseConv2D kernels) except those kept dense, fine-tunes on the train split
while the schedule raises the sparsity, strips the pruning wrappers and saves a
plain SavedModel. The schedule's steps come from the number of epochs and the size
of the train split.

Also home of the small helpers the other compression modules share
(:func:`load_for_compression`, :func:`finetune`, :func:`kernel_sparsity`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt import registry
from tfopt._keras import keras
from tfopt.compression.common import (
    AUTO,
    Searchable,
    batch_size_setting,
    check_with_names,
    finetune,
    kept_dense,
    kernel_of,
    kernel_sparsity,
    learning_rate_setting,
    load_for_compression,
    model_sparsity,
    seed_setting,
    steps_per_epoch,
)
from tfopt.errors import ModelError
from tfopt.settings import setting
from tfopt.training import models

log = logging.getLogger(__name__)

SCHEDULES = ("polynomial", "constant")


# --- pruning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PruneConfig(Searchable):
    """How to prune: each field is a setting (``tfopt.settings``), described where declared."""

    target_sparsity: float = setting(
        0.8,
        "Fraction of kernel weights set to zero in each pruned layer.",
        low=0.0,
        high=1.0,
        high_open=True,
        param="target_sparsity",
        search=(0.5, 0.95),
    )
    schedule: str = setting(
        "polynomial",
        "How sparsity rises during fine-tuning: polynomial (from 0 to the target over the "
        "first ramp_fraction of the steps) or constant (the target from step 0).",
        choices=SCHEDULES,
    )
    structured_2_4: bool = setting(
        False,
        "2:4 structured sparsity (2 zeros in every block of 4 weights along the input "
        "channels); the sparsity is then 0.5 whatever target_sparsity says.",
    )
    keep_dense: tuple[str, ...] = setting(
        AUTO,
        "Comma-separated names of layers left dense; 'auto' = the first conv layer and the "
        "output layer; '' prunes every prunable layer.",
    )
    epochs: int = setting(
        6, "Fine-tuning epochs while pruning.", low=1, high=100_000, param="prune_epochs"
    )
    batch_size: int = batch_size_setting()
    learning_rate: float = learning_rate_setting(5e-4)
    seed: int = seed_setting()
    ramp_fraction: float = setting(
        0.6,
        "Share of the fine-tuning steps over which a polynomial schedule ramps up.",
        low=0.0,
        high=1.0,
        low_open=True,
    )

    def __post_init__(self):
        # keep_dense is text for KFP ("a,b", "auto", ""), a tuple of names for the code
        check_with_names(self, "keep_dense")

    @property
    def effective_sparsity(self) -> float:
        return 0.5 if self.structured_2_4 else self.target_sparsity


@dataclass(frozen=True)
class PruneResult:
    """What pruning reached.

    Attributes:
        sparsity: zeros over the kernels of the pruned layers (tracks the target).
        model_sparsity: zeros over every weight of the saved model.
        layer_sparsity: per-layer kernel sparsity, pruned and dense layers alike.
        pruned_layers / dense_layers: which layers were pruned or kept dense.
    """

    model_path: str
    target_sparsity: float
    sparsity: float
    model_sparsity: float
    layer_sparsity: dict[str, float]
    pruned_layers: list[str]
    dense_layers: list[str]
    params: int
    # share of the model's parameters in the pruned kernels (depthwise ones included)
    pruned_param_fraction: float
    metrics: dict
    schedule: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _prunable(layer) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras.prune_registry import (
        PruneRegistry,
    )

    return kernel_of(layer) is not None and PruneRegistry.supports(layer)


def prunability(
    model: keras.Model, keep_dense: tuple[str, ...] = (AUTO,)
) -> dict[str, tuple[bool, str]]:
    """Per layer (input layers aside): whether pruning with ``keep_dense`` prunes it, and
    why not."""
    try:
        to_prune, dense = plan_layers(model, keep_dense)
    except ModelError:
        to_prune, dense = [], []
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if layer.name in to_prune:
            out[layer.name] = (True, "")
        elif kernel_of(layer) is None:
            out[layer.name] = (False, "no kernel (passes through)")
        elif layer.name in dense:
            out[layer.name] = (False, f"kept dense (keep_dense={','.join(keep_dense)})")
        else:
            out[layer.name] = (False, f"{type(layer).__name__} is not in tfmot's prune registry")
    return out


def plan_layers(model: keras.Model, keep_dense: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(layers to prune, layers kept dense); fails when nothing would be pruned."""
    with_kernel = [layer for layer in model.layers if kernel_of(layer) is not None]
    keep = kept_dense(model, keep_dense, "PruneConfig")
    prune = [la.name for la in with_kernel if la.name not in keep and _prunable(la)]
    if not prune:
        raise ModelError(
            "the model has no layer to prune: prunable layers (Dense/Conv with a kernel) are "
            f"{[la.name for la in with_kernel if _prunable(la)] or 'none'}, kept dense: "
            f"{sorted(keep) or 'none'}"
        )
    return prune, sorted(keep & {la.name for la in with_kernel})


def make_schedule(config: PruneConfig, total_steps: int, spe: int):
    """The tfmot pruning schedule and its steps, derived from epochs and data size."""
    import tensorflow_model_optimization as tfmot

    frequency = max(1, min(100, spe // 2))
    if config.schedule == "constant":
        sched = tfmot.sparsity.keras.ConstantSparsity(
            config.effective_sparsity, begin_step=0, frequency=frequency
        )
        return sched, {
            "kind": "constant",
            "begin_step": 0,
            "end_step": -1,
            "frequency": frequency,
            "total_steps": total_steps,
        }
    end = max(frequency, int(total_steps * config.ramp_fraction) // frequency * frequency)
    end = min(end, max(frequency, (total_steps - 1) // frequency * frequency))
    sched = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=config.effective_sparsity,
        begin_step=0,
        end_step=end,
        frequency=frequency,
    )
    return sched, {
        "kind": "polynomial",
        "begin_step": 0,
        "end_step": end,
        "frequency": frequency,
        "total_steps": total_steps,
    }


def _wrap(model: keras.Model, to_prune: list[str], config: PruneConfig, schedule):
    """A copy of ``model`` with the layers of ``to_prune`` wrapped for pruning."""
    import tensorflow_model_optimization as tfmot

    kwargs = {"pruning_schedule": schedule}
    if config.structured_2_4:
        kwargs["sparsity_m_by_n"] = (2, 4)

    def wrap(layer):
        if layer.name in to_prune:
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                # tfmot's registry lists DepthwiseConv2D with no prunable weight; a layer
                # naming its own (tfmot's PrunableLayer protocol) is pruned as any other
                layer.get_prunable_weights = lambda: [layer.depthwise_kernel]
            return tfmot.sparsity.keras.prune_low_magnitude(layer, **kwargs)
        return layer  # layers of the private copy: their weights are kept as they are

    try:
        return keras.models.clone_model(model, clone_function=wrap)
    except ValueError as exc:
        raise ModelError(f"prune: cannot wrap the model for pruning ({exc})") from None


def _strip(wrapped: keras.Model) -> keras.Model:
    """The pruned model without its pruning wrappers (nor the depthwise layers' hook)."""
    import tensorflow_model_optimization as tfmot

    stripped = tfmot.sparsity.keras.strip_pruning(wrapped)
    for layer in stripped.layers:
        layer.__dict__.pop("get_prunable_weights", None)
    return stripped


def _result(
    stripped: keras.Model,
    output_path: str,
    config: PruneConfig,
    to_prune: list[str],
    dense: list[str],
    metrics: dict,
    sched_info: dict,
    notes: list[str],
) -> PruneResult:
    """What the saved model reached: sparsity over the pruned kernels and over the model."""
    layer_sparsity = kernel_sparsity(stripped)
    # every layer in to_prune has a kernel: the filter only narrows the type
    kernels = [k for n in to_prune if (k := kernel_of(stripped.get_layer(n))) is not None]
    pruned_zeros = sum(int(np.sum(k.numpy() == 0)) for k in kernels)
    pruned_total = sum(int(np.prod(k.shape)) for k in kernels)
    params = models.count_params(stripped)
    return PruneResult(
        model_path=output_path,
        target_sparsity=config.effective_sparsity,
        sparsity=pruned_zeros / pruned_total,
        model_sparsity=model_sparsity(stripped),
        layer_sparsity=layer_sparsity,
        pruned_layers=to_prune,
        dense_layers=dense,
        params=params,
        pruned_param_fraction=pruned_total / max(params, 1),
        metrics=metrics,
        schedule=sched_info,
        notes=notes,
    )


def prune_model(
    model_path: str,
    dataset_dir: str,
    output_path: str,
    config: PruneConfig = PruneConfig(),
    tensorboard_dir: str | None = None,
) -> PruneResult:
    """Prune, fine-tune, strip and save; the model at ``model_path`` is only read."""
    import tensorflow_model_optimization as tfmot

    model, info = load_for_compression(model_path, dataset_dir, "prune")
    to_prune, dense = plan_layers(model, config.keep_dense)
    spe = steps_per_epoch(info, config.batch_size)
    total = spe * config.epochs
    schedule, sched_info = make_schedule(config, total, spe)
    notes = []
    if config.structured_2_4 and config.target_sparsity != 0.5:
        notes.append(
            f"2:4 structured sparsity fixes sparsity at 0.5 "
            f"(target_sparsity={config.target_sparsity} ignored)"
        )
    wrapped = _wrap(model, to_prune, config, schedule)
    log.info(
        "pruning %s to %.2f (%s), kept dense: %s",
        to_prune,
        config.effective_sparsity,
        config.schedule,
        dense,
    )
    metrics = finetune(
        wrapped,
        info,
        config.epochs,
        config.batch_size,
        config.learning_rate,
        config.seed,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
        tensorboard_dir=tensorboard_dir,
    )
    stripped = _strip(wrapped)
    models.save_for_dataset(stripped, output_path, info)
    result = _result(stripped, output_path, config, to_prune, dense, metrics, sched_info, notes)
    log.info(
        "pruned: sparsity %.4f (target %.2f), per layer %s",
        result.sparsity,
        result.target_sparsity,
        result.layer_sparsity,
    )
    return result


def apply(model_dir, dataset_dir, output_path, config, tensorboard_dir=None) -> registry.Outcome:
    """The technique's entry point (``tfopt.registry.Technique.apply``)."""
    r = prune_model(model_dir, dataset_dir, output_path, config, tensorboard_dir)
    return registry.Outcome(
        metrics={
            **r.metrics,
            "sparsity": r.sparsity,
            "model_sparsity": r.model_sparsity,
            "params": r.params,
            "pruned_param_fraction": r.pruned_param_fraction,
            **{f"sparsity.{k}": v for k, v in r.layer_sparsity.items()},
        },
        model={
            "params": r.params,
            "sparsity": r.model_sparsity,
            "pruned_sparsity": r.sparsity,
            "layer_sparsity": r.layer_sparsity,
            "pruned_param_fraction": r.pruned_param_fraction,
        },
        notes=r.notes,
    )


TECHNIQUE = registry.register(
    registry.Technique(
        name="prune",
        summary="Magnitude pruning (tfmot): zeros in the kernels, fine-tuned; a smaller gzip "
        "file, not a faster model.",
        config=PruneConfig,
        apply=apply,
        variants=(
            registry.Variant("pruned", "prune", switch="enable_pruning", task="prune"),
            registry.Variant("pruned_int8", "tflite", base="pruned", settings={"mode": "int8"}),
        ),
        trains=True,
        needs_keras=True,
        improves=(),
        limits="a dense runtime stores and computes zeros like any other weight: a higher "
        "sparsity shrinks the gzip size only, not the file's bytes nor its multiply-adds",
        plan=lambda model, config: prunability(model, config.keep_dense),
    )
)
