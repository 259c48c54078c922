"""LiteRT Quantizer component: float ``.tflite`` -> one recipe (int8, int16x8, dynamic,
int4_weight_only, mixed)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def litert_quantize(
    model: Input[Model],
    dataset: Input[Dataset],
    tflite_model: Output[Model],
    variant: str,
    recipe: str = "int8",
    calibration_samples: int = 64,
    min_snr_db: float = 10.0,
    max_float_ops: int = 4,
    mixed_min_snr_db: float = 20.0,
    max_accuracy_drop: float = -1.0,
    enabled: bool = True,
):
    """Quantize the float TFLite ``model`` with LiteRT Quantizer; a disabled or skipped input,
    or a recipe that does not apply to the model, yields a skipped output with the reason.

    ``min_snr_db`` < -100 turns the selective float fallback off; ``max_accuracy_drop`` < 0
    turns the accuracy check off.
    """
    from tfopt.components import _util

    if _util.skip_if_disabled(tflite_model, variant, enabled, model):
        return
    from tfopt.compression import litert_quantizer as lq

    config = lq.LiteRTQuantizeConfig(
        recipe=recipe,
        calibration_samples=calibration_samples,
        min_snr_db=None if min_snr_db < -100 else min_snr_db,
        max_float_ops=max_float_ops,
        mixed_min_snr_db=mixed_min_snr_db,
        max_accuracy_drop=None if max_accuracy_drop < 0 else max_accuracy_drop,
    )
    with _util.skip_when_not_applicable(tflite_model, variant, "tflite"):
        result = lq.quantize_tflite(model.path, tflite_model.path, config, dataset.path)
        _util.describe_model(
            tflite_model,
            variant,
            "tflite",
            base=model,
            quantization=f"litert_{result.recipe}",
            tensor_types=result.tensor_types,
            worst_tensors=result.worst_tensors,
            float_ops=result.float_ops,
            int8_ops=result.int8_ops,
            notes=result.notes,
        )
