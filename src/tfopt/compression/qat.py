"""Quantization-aware training (tfmot), optionally sparsity-preserving, to int8 TFLite.

tfmot's ``quantize_model`` refuses models with layers it does not know (the
``Normalization`` layer every tfopt model starts with), so every layer the
default 8-bit registry supports is annotated and the rest stays float; the
TFLite converter then quantizes the float prefix from the representative
set. With ``preserve_sparsity`` the pruning-preserving scheme
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
from tfopt.compression.common import finetune, kernel_of, load_for_compression
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
    epochs: int = 3
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
    sparsity_before: float
    sparsity_after: float
    metrics: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _kernel_zero_fraction(weights: list[np.ndarray]) -> float:
    total = sum(w.size for w in weights)
    return float(sum(int(np.sum(w == 0)) for w in weights) / max(total, 1))


def annotate(model: keras.Model) -> tuple[keras.Model, list[str], list[str]]:
    """Annotate the layers tfmot's default 8-bit registry supports; the rest stays float."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry as registry_lib,
    )

    registry = registry_lib.Default8BitQuantizeRegistry()
    quantized, kept = [], []

    def wrap(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        if registry.supports(layer):
            quantized.append(layer.name)
            return tfmot.quantization.keras.quantize_annotate_layer(layer)
        kept.append(layer.name)
        return layer  # a layer of the private copy: weights kept as they are

    annotated = keras.models.clone_model(model, clone_function=wrap)
    if not any(kernel_of(model.get_layer(n)) is not None for n in quantized):
        raise ModelError(
            "the model has no layer quantization-aware training can quantize "
            f"(no Dense/Conv layer tfmot supports); layers: "
            f"{[la.name for la in model.layers]}"
        )
    return annotated, quantized, kept


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
    annotated, quantized, kept = annotate(model)
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
        models.save_model(qmodel, saved, info.class_names)
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
        sparsity_before=sparsity_before,
        sparsity_after=sparsity_after,
        metrics=metrics,
        notes=notes,
    )
