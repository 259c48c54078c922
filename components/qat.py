"""QAT component: SavedModel -> quantization-aware fine-tuned int8 TFLite + metrics."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def qat(
    model: Input[Model],
    dataset: Input[Dataset],
    tflite_model: Output[Model],
    metrics: Output[Metrics],
    tensorboard: Output[Artifact],
    variant: str = "qat_int8",
    preserve_sparsity: bool = False,
    epochs: int = 2,
    batch_size: int = 64,
    learning_rate: float = 0.0001,
    seed: int = 42,
    representative_samples: int = 200,
    int8_io: bool = False,
    enabled: bool = True,
):
    """QAT (pruning-preserving with ``preserve_sparsity``, for pqat_int8) -> int8 TFLite."""
    from tfopt.components import _util

    if _util.skip_if_disabled(tflite_model, variant, enabled, model, also=(metrics, tensorboard)):
        return
    from tfopt.compression import qat as qat_lib

    config = qat_lib.QatConfig(
        preserve_sparsity=preserve_sparsity,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        representative_samples=representative_samples,
        int8_io=int8_io,
    )
    with _util.skip_when_not_applicable(
        tflite_model, variant, "tflite", also=(metrics, tensorboard)
    ):
        result = qat_lib.qat_model(
            model.path, dataset.path, tflite_model.path, config, tensorboard_dir=tensorboard.path
        )
        _util.log_metrics(
            metrics,
            {
                **result.metrics,
                "size_bytes": result.size_bytes,
                "sparsity_before": result.sparsity_before,
                "sparsity_after": result.sparsity_after,
                "quantized_param_fraction": result.quantized_param_fraction,
            },
        )
        _util.describe_model(
            tflite_model,
            variant,
            "tflite",
            base=model,
            quantization="int8",
            quantized_param_fraction=result.quantized_param_fraction,
            float_layers=result.float_reasons,
            notes=result.notes,
        )
