"""SavedModel -> TFLite: float32, dynamic-range, float16 and full-integer int8.

Full-integer conversion calibrates on a bounded sample of the training
split (``representative_samples`` examples), as the TFLite docs recommend.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt import data as data_lib
from tfopt import fsutil
from tfopt._keras import tf
from tfopt.config import check_choice, check_int
from tfopt.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

MODES = ("float32", "dynamic", "float16", "int8")


@dataclass(frozen=True)
class QuantizeConfig:
    """How to convert.

    Attributes:
        mode: ``float32`` (no quantization), ``dynamic`` (int8 weights),
            ``float16`` (float16 weights) or ``int8`` (weights and activations).
        representative_samples: calibration examples drawn from the train split (int8).
        int8_io: int8 input/output tensors (for integer-only accelerators);
            only with ``mode="int8"``.
    """

    mode: str = "int8"
    representative_samples: int = 200
    int8_io: bool = False

    def __post_init__(self):
        check_choice("QuantizeConfig", "mode", self.mode, MODES)
        check_int("QuantizeConfig", "representative_samples", self.representative_samples,
                  1, 100_000)
        if self.int8_io and self.mode != "int8":
            raise ConfigError(f"QuantizeConfig.int8_io=True is not allowed with "
                              f"mode={self.mode!r}: integer input/output needs mode 'int8'")


@dataclass(frozen=True)
class QuantizeResult:
    path: str
    mode: str
    size_bytes: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def representative_dataset(dataset_dir: str, samples: int) -> Callable[[], Iterator[list]]:
    """A calibration generator over a bounded sample of the training split."""
    info = data_lib.load_info(dataset_dir)
    x, _ = data_lib.load_arrays(info, "train", limit=samples)

    def gen():
        for i in range(len(x)):
            yield [x[i:i + 1].astype(np.float32)]

    return gen


def make_converter(saved_model_dir: str, config: QuantizeConfig, dataset_dir: str | None):
    if not fsutil.exists(f"{saved_model_dir}/saved_model.pb"):
        raise ModelError(f"{saved_model_dir}: not a SavedModel directory (no saved_model.pb)")
    if config.mode == "int8" and not dataset_dir:
        raise ConfigError("int8 conversion needs dataset_dir for the representative dataset")
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=["serving_default"])
    if config.mode == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if config.mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif config.mode == "int8":
        converter.representative_dataset = representative_dataset(
            dataset_dir, config.representative_samples)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if config.int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter


def convert_to_tflite(saved_model_dir: str, output_path: str,
                      config: QuantizeConfig = QuantizeConfig(),
                      dataset_dir: str | None = None) -> QuantizeResult:
    """Convert a SavedModel (``serving_default``) to a ``.tflite`` file, atomically."""
    converter = make_converter(saved_model_dir, config, dataset_dir)
    try:
        content = converter.convert()
    except Exception as exc:  # the converter raises ConverterError and others
        raise ModelError(f"{saved_model_dir}: TFLite {config.mode} conversion failed "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    with fsutil.atomic_file(output_path, "wb") as fh:
        fh.write(content)
    log.info("wrote %s (%s, %d bytes)", output_path, config.mode, len(content))
    return QuantizeResult(path=output_path, mode=config.mode, size_bytes=len(content))



