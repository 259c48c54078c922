"""Quantization-aware training (tfmot), optionally sparsity- or cluster-preserving, to int8
TFLite.

tfmot's ``quantize_model`` refuses models with layers it does not know (the
``Normalization`` layer every tfopt model starts with), so every layer the
default 8-bit registry supports is annotated, plus each BatchNormalization that
tfmot's transforms fold into the Conv/Dense before it; the rest stays float
(each with its reason) and the TFLite converter quantizes it from the
representative set. Nested models are flattened first (``common.flatten_nested``).
With ``preserve_sparsity`` the pruning-preserving scheme
(``Default8BitPrunePreserveQuantizeScheme``) keeps the zeros of a pruned
model through fine-tuning; with ``preserve_clusters`` the cluster-preserving one
(``Default8BitClusterPreserveQuantizeScheme``) keeps the shared values of a clustered
model. The fine-tuned model is exported only as int8 TFLite: no quantization wrapper
reaches an artifact.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt import registry
from tfopt._keras import keras
from tfopt.compression import tflite
from tfopt.compression.common import (
    batch_size_setting,
    finetune,
    graph_links,
    kernel_of,
    learning_rate_setting,
    load_for_compression,
    representative_samples_setting,
    seed_setting,
)
from tfopt.errors import ModelError
from tfopt.settings import check_settings, setting
from tfopt.training import models

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QatConfig:
    """How to run quantization-aware training: each field is a setting (``tfopt.settings``),
    described where declared."""

    preserve_sparsity: bool = setting(
        False, "Keep the zeros of a pruned model through fine-tuning (pruning-preserving QAT)."
    )
    preserve_clusters: bool = setting(
        False,
        "Keep the shared values of a clustered model through fine-tuning (cluster-preserving "
        "QAT; with preserve_sparsity its zeros too).",
    )
    epochs: int = setting(
        2, "Quantization-aware fine-tuning epochs.", low=1, high=100_000, param="qat_epochs"
    )
    batch_size: int = batch_size_setting()
    learning_rate: float = learning_rate_setting(1e-4)
    seed: int = seed_setting()
    representative_samples: int = representative_samples_setting()
    int8_io: bool = setting(
        False, "int8 input/output tensors of the TFLite model (integer-only accelerators)."
    )

    def __post_init__(self):
        check_settings(self)


@dataclass(frozen=True)
class QatResult:
    path: str
    size_bytes: int
    quantized_layers: list[str]
    float_layers: list[str]
    float_reasons: dict[str, str]
    # parameters of the float model inside quantize wrappers (measured on the QAT model)
    quantized_param_fraction: float
    sparsity_before: float
    sparsity_after: float
    metrics: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _kernel_zero_fraction(weights: list[np.ndarray]) -> float:
    total = sum(w.size for w in weights)
    return float(sum(int(np.sum(w == 0)) for w in weights) / max(total, 1))


_FOLDING_PRODUCERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def quantizability(model: keras.Model) -> dict[str, tuple[bool, str]]:
    """Per layer (input layers aside): whether QAT annotates it, and why not.

    Supported: what tfmot's default 8-bit registry knows, and a ``BatchNormalization``
    fed only by a linear Conv2D / DepthwiseConv2D / Dense with no other consumer: tfmot's
    transforms fold it into that layer (no fake-quant between them), as TFLite does.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_lib,
    )

    known = registry_lib.Default8BitQuantizeRegistry()
    inbound, consumers = graph_links(model)
    out: dict[str, tuple[bool, str]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.BatchNormalization):
            feeding = inbound.get(layer.name, [])
            producer = feeding[0] if len(feeding) == 1 else None
            if (
                isinstance(producer, _FOLDING_PRODUCERS)
                and getattr(producer.activation, "__name__", "") == "linear"
                and consumers.get(producer.name) == 1
            ):
                out[layer.name] = (True, f"folded into {producer.name}")
            else:
                out[layer.name] = (
                    False,
                    "BatchNormalization not right after a linear Conv2D / DepthwiseConv2D / "
                    "Dense (the only place tfmot folds it)",
                )
        elif known.supports(layer):
            out[layer.name] = (True, "")
        elif kind == "TFOpLambda":
            out[layer.name] = (
                False,
                f"raw TensorFlow op ({layer.get_config().get('function')})"
                ": tfmot annotates Keras layers only",
            )
        else:
            out[layer.name] = (False, f"{kind} is not in tfmot's default 8-bit registry")
    return out


def annotate(
    model: keras.Model,
) -> tuple[keras.Model, list[str], list[str], dict[str, str]]:
    """Annotate the layers QAT can quantize (:func:`quantizability`); the rest stays float.

    Returns the annotated model, the quantized and float layer names, and why each float
    layer is float.
    """
    import tensorflow_model_optimization as tfmot

    plan = quantizability(model)
    quantized = [n for n, (ok, _) in plan.items() if ok]
    reasons = {n: why for n, (ok, why) in plan.items() if not ok}

    def wrap(layer):
        if plan.get(layer.name, (False, ""))[0]:
            return tfmot.quantization.keras.quantize_annotate_layer(layer)
        return layer  # a layer of the private copy: weights kept as they are

    if not any(kernel_of(model.get_layer(n)) is not None for n in quantized):
        raise ModelError(
            "the model has no layer quantization-aware training can quantize "
            f"(no Dense/Conv layer tfmot supports); layers: "
            f"{[la.name for la in model.layers]}"
        )
    annotated = keras.models.clone_model(model, clone_function=wrap)
    return annotated, quantized, list(reasons), reasons


def quantized_fraction(qmodel: keras.Model, total_params: int) -> float:
    """Share of the float model's parameters inside quantize wrappers of ``qmodel``."""
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import (
        QuantizeWrapper,
    )

    inside = 0
    for layer in qmodel.layers:
        if isinstance(layer, QuantizeWrapper):
            # the wrapper holds the layer's weights (the kernel moves to it) and its own
            # quantizer state (optimizer_step, min/max), named after the wrapper
            own = f"{layer.name}/"
            inside += sum(
                int(np.prod(w.shape)) for w in layer.weights if not w.name.startswith(own)
            )
    return inside / max(total_params, 1)


def _scheme(config: QatConfig):
    """The quantize scheme: default 8-bit, or a collaborative one that keeps the zeros of a
    pruned model (``Default8BitPrunePreserveQuantizeScheme``) or the shared values of a
    clustered one (``Default8BitClusterPreserveQuantizeScheme``, with its zeros when
    ``preserve_sparsity`` is on too).

    The collaborative registries call every layer without trainable weights "supported" (the
    ``Normalization`` layer included) and then fail to find a config for it: they are
    restricted to the layers the 8-bit registry knows.
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_lib,
    )

    combine = tfmot.experimental.combine
    if config.preserve_clusters:
        scheme = combine.Default8BitClusterPreserveQuantizeScheme(config.preserve_sparsity)
    elif config.preserve_sparsity:
        scheme = combine.Default8BitPrunePreserveQuantizeScheme()
    else:
        return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    base = registry_lib.Default8BitQuantizeRegistry()
    own_registry = scheme.get_quantize_registry

    def restricted():
        own = own_registry()
        supports = own.supports
        own.supports = lambda layer: base.supports(layer) and supports(layer)
        return own

    scheme.get_quantize_registry = restricted
    return scheme


def qat_model(
    model_path: str,
    dataset_dir: str,
    output_path: str,
    config: QatConfig = QatConfig(),
    tensorboard_dir: str | None = None,
) -> QatResult:
    """QAT-fine-tune the model at ``model_path`` (only read) and write int8 TFLite."""
    import tensorflow_model_optimization as tfmot

    model, info = load_for_compression(model_path, dataset_dir, "qat")
    kernels = [k.numpy() for la in model.layers if (k := kernel_of(la)) is not None]
    sparsity_before = _kernel_zero_fraction(kernels)
    annotated, quantized, kept, reasons = annotate(model)
    notes = [f"layers left in float during QAT: {', '.join(kept)}"] if kept else []
    if config.preserve_sparsity and sparsity_before < 0.05:
        notes.append(
            f"preserve_sparsity on a model with only {sparsity_before:.1%} zero "
            "kernel weights (not a pruned model?)"
        )
    with tfmot.quantization.keras.quantize_scope():
        qmodel = tfmot.quantization.keras.quantize_apply(annotated, _scheme(config))
    fraction = quantized_fraction(qmodel, models.count_params(model))
    log.info("QAT covers %.1f%% of the parameters; float: %s", 100 * fraction, reasons)
    metrics = finetune(
        qmodel,
        info,
        config.epochs,
        config.batch_size,
        config.learning_rate,
        config.seed,
        tensorboard_dir=tensorboard_dir,
    )
    after = [w.numpy() for w in qmodel.weights if w.name.endswith("kernel:0")]
    sparsity_after = _kernel_zero_fraction(after) if after else 0.0
    tmp = tempfile.mkdtemp(prefix="tfopt-qat-")
    try:
        saved = os.path.join(tmp, "model")
        models.save_for_conversion(qmodel, saved)
        qres = tflite.convert_to_tflite(
            saved,
            dataset_dir,
            output_path,
            tflite.TFLiteConfig(
                mode="int8",
                int8_io=config.int8_io,
                representative_samples=config.representative_samples,
                max_accuracy_drop=-1.0,  # the fake-quant model is already int8-aware
            ),
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    notes += qres.notes
    log.info(
        "QAT int8 written to %s (%d bytes); kernel sparsity %.3f -> %.3f",
        output_path,
        qres.size_bytes,
        sparsity_before,
        sparsity_after,
    )
    return QatResult(
        path=output_path,
        size_bytes=qres.size_bytes,
        quantized_layers=quantized,
        float_layers=kept,
        float_reasons=reasons,
        quantized_param_fraction=fraction,
        sparsity_before=sparsity_before,
        sparsity_after=sparsity_after,
        metrics=metrics,
        notes=notes,
    )


def apply(model_dir, dataset_dir, output_path, config, tensorboard_dir=None) -> registry.Outcome:
    """The technique's entry point (``tfopt.registry.Technique.apply``)."""
    r = qat_model(model_dir, dataset_dir, output_path, config, tensorboard_dir)
    return registry.Outcome(
        metrics={
            **r.metrics,
            "size_bytes": r.size_bytes,
            "sparsity_before": r.sparsity_before,
            "sparsity_after": r.sparsity_after,
            "quantized_param_fraction": r.quantized_param_fraction,
        },
        model={
            "quantization": "int8",
            "quantized_param_fraction": r.quantized_param_fraction,
            "float_layers": r.float_reasons,
        },
        notes=r.notes,
    )


TECHNIQUE = registry.register(
    registry.Technique(
        name="qat",
        summary="Quantization-aware training (tfmot), optionally keeping a pruned model's "
        "zeros, fine-tuned and exported as int8 TFLite.",
        config=QatConfig,
        apply=apply,
        variants=(
            registry.Variant("qat_int8", "qat", switch="enable_qat"),
            registry.Variant(
                "pqat_int8",
                "qat",
                base="pruned",
                switch="enable_qat",
                settings={"preserve_sparsity": True},
            ),
        ),
        output_format="tflite",
        trains=True,
        needs_keras=True,
        plan=lambda model, config: quantizability(model),
    )
)
