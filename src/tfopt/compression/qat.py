"""Quantization-aware training (tfmot), optionally sparsity-preserving, to int8 TFLite.

tfmot's ``quantize_model`` refuses models with layers it does not know (the
``Normalization`` layer every tfopt model starts with), so every layer the
default 8-bit registry supports is annotated, plus each BatchNormalization that
tfmot's transforms fold into the Conv/Dense before it; the rest stays float
(each with its reason) and the TFLite converter quantizes it from the
representative set. Nested models are flattened first (``common.flatten_nested``).
With ``preserve_sparsity`` the pruning-preserving scheme
(``Default8BitPrunePreserveQuantizeScheme``) keeps the zeros of a pruned
model through fine-tuning. The fine-tuned model is exported only as int8
TFLite: no quantization wrapper reaches an artifact.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt._keras import keras
from tfopt.checks import check_float, check_int
from tfopt.compression import tflite
from tfopt.compression.common import (
    finetune,
    graph_links,
    kernel_of,
    load_for_compression,
)
from tfopt.errors import ModelError
from tfopt.training import models

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QatConfig:
    """How to run quantization-aware training.

    Attributes:
        preserve_sparsity: keep the zeros of a pruned model (pruning-preserving QAT).
        epochs / batch_size / learning_rate / seed: fine-tuning.
        representative_samples / int8_io: the final int8 TFLite conversion.
    """

    preserve_sparsity: bool = False
    epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 1e-4
    seed: int = 42
    representative_samples: int = 200
    int8_io: bool = False

    def __post_init__(self):
        name = "QatConfig"
        check_int(name, "epochs", self.epochs, 1, 100_000)
        check_int(name, "batch_size", self.batch_size, 1, 1 << 20)
        check_float(name, "learning_rate", self.learning_rate, 0.0, 10.0, low_open=True)
        check_int(name, "seed", self.seed, 0, 2**31 - 1)
        check_int(name, "representative_samples", self.representative_samples, 1, 100_000)


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

    registry = registry_lib.Default8BitQuantizeRegistry()
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
        elif registry.supports(layer):
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


def _prune_preserve_scheme():
    """``Default8BitPrunePreserveQuantizeScheme`` restricted to layers the 8-bit registry knows.

    Its registry calls every layer without trainable weights "supported" (the
    ``Normalization`` layer included) and then fails to find a config for it.
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_lib,
    )

    base = registry_lib.Default8BitQuantizeRegistry()

    class Scheme(tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme):
        def get_quantize_registry(self):
            registry = super().get_quantize_registry()
            supports = registry.supports
            registry.supports = lambda layer: base.supports(layer) and supports(layer)
            return registry

    return Scheme()


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
    if config.preserve_sparsity:
        if sparsity_before < 0.05:
            notes.append(
                f"preserve_sparsity on a model with only {sparsity_before:.1%} zero "
                "kernel weights (not a pruned model?)"
            )
        scheme = _prune_preserve_scheme()
    else:
        scheme = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    with tfmot.quantization.keras.quantize_scope():
        qmodel = tfmot.quantization.keras.quantize_apply(annotated, scheme)
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
            output_path,
            tflite.QuantizeConfig(
                mode="int8",
                int8_io=config.int8_io,
                representative_samples=config.representative_samples,
            ),
            dataset_dir,
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
