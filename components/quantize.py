"""Quantize component: SavedModel -> TFLite in one mode (float32, dynamic, float16, int8)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def quantize(
    model: Input[Model],
    dataset: Input[Dataset],
    tflite_model: Output[Model],
    variant: str,
    mode: str = "int8",
    representative_samples: int = 200,
    int8_io: bool = False,
    max_accuracy_drop: float = -1.0,
    fallback: str = "selective",
    enabled: bool = True,
):
    """Convert ``model`` to TFLite; a disabled or skipped input, or a model no mode can
    convert (fallbacks included), yields a skipped output with the reason.

    ``max_accuracy_drop`` < 0 turns the int8 accuracy check off.
    """
    from tfopt.components import _util

    if _util.skip_if_disabled(tflite_model, variant, enabled, model):
        return
    from tfopt.compression import tflite as quantize_lib

    config = quantize_lib.QuantizeConfig(
        mode=mode,
        representative_samples=representative_samples,
        int8_io=int8_io,
        max_accuracy_drop=None if max_accuracy_drop < 0 else max_accuracy_drop,
        fallback=fallback,
    )
    with _util.skip_when_not_applicable(tflite_model, variant, "tflite"):
        result = quantize_lib.convert_to_tflite(model.path, tflite_model.path, config, dataset.path)
        _util.describe_model(
            tflite_model,
            variant,
            "tflite",
            base=model,
            quantization=result.mode,
            fallback=result.fallback or None,
            notes=result.notes,
        )
