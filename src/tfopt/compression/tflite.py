"""SavedModel -> TFLite: float32, dynamic-range, float16 and full-integer int8.

Full-integer conversion calibrates on a bounded, seeded sample of the training
split (``representative_samples`` examples drawn across its shards and decoded as
training decodes them), as the TFLite docs recommend.

int8 never crashes a pipeline for a fixable reason: when the conversion fails, or loses
more than ``max_accuracy_drop`` on the validation split (a real drop: one that noise
explains is not one, ``evaluation/noise.py``), it falls back step by step, noting each:

1. selective quantization: int8 with float builtin kernels allowed (failed
   conversion), or the layers with the largest quantization error (found by
   TFLite's QuantizationDebugger) kept in float (accuracy drop);
2. float16 (``fallback="float16"`` goes straight here).

Only when every step fails does :class:`ConversionError` reach the caller
(the component then marks its output skipped with the reason).
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

from tfopt import fsutil, registry
from tfopt._keras import tf
from tfopt.compression.common import max_accuracy_drop_setting, representative_samples_setting
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError, ModelError
from tfopt.evaluation.noise import PairedDrop, paired_drop
from tfopt.evaluation.runtime import float_ops_in_int8, op_types  # noqa: F401 - re-exported
from tfopt.settings import check_settings, setting

log = logging.getLogger(__name__)

MODES = registry.TFLITE_MODES  # float32, dynamic, float16, int8
FALLBACKS = ("selective", "float16", "none")


class ConversionError(ModelError):
    """No TFLite model could be produced (after every allowed fallback)."""


@dataclass(frozen=True)
class TFLiteConfig:
    """How to convert: each field is a setting (``tfopt.settings``), described where declared."""

    mode: str = setting(
        "int8",
        "float32 (no quantization), dynamic (int8 weights), float16 (float16 weights) or "
        "int8 (weights and activations, calibrated).",
        choices=MODES,
    )
    representative_samples: int = representative_samples_setting()
    int8_io: bool = setting(
        False,
        "int8 input/output tensors (for integer-only accelerators); only with mode int8.",
    )
    max_accuracy_drop: float = max_accuracy_drop_setting("int8 only, before falling back")
    fallback: str = setting(
        "selective",
        "int8 only, when the conversion fails or loses too much: selective (keep offending "
        "ops / layers in float, then float16), float16 (straight to float16) or none (fail "
        "instead).",
        choices=FALLBACKS,
    )
    check_samples: int = setting(
        2000, "Validation examples used for the int8 accuracy check.", low=1, high=10_000_000
    )
    max_denylisted: int = setting(
        4, "Most layers selective quantization may keep in float.", low=1, high=1000
    )

    def __post_init__(self):
        if self.max_accuracy_drop is None:  # the old spelling of "no check"
            object.__setattr__(self, "max_accuracy_drop", -1.0)
        check_settings(self)
        if self.int8_io and self.mode != "int8":
            raise ConfigError(
                f"TFLiteConfig.int8_io=True is not allowed with "
                f"mode={self.mode!r}: integer input/output needs mode 'int8'"
            )

    @property
    def accuracy_limit(self) -> float | None:
        """``max_accuracy_drop``, or ``None`` when the check is off (a value < 0)."""
        return None if self.max_accuracy_drop < 0 else self.max_accuracy_drop


QuantizeConfig = TFLiteConfig  # deprecated name (it converts in every mode, not only int8)


@dataclass(frozen=True)
class QuantizeResult:
    """What was written.

    Attributes:
        mode: the mode actually produced (``int8``, or ``float16`` after a fallback).
        requested_mode: the mode asked for.
        fallback: ``""``, ``"selective"`` or ``"float16"``.
        accuracy_drop: validation accuracy points lost against the SavedModel (when checked).
        float_ops: op types left in float inside an int8 model.
        denylisted: layers (tensor names) selective quantization kept in float.
        notes: what was done and why, for people.
    """

    path: str
    mode: str
    size_bytes: int
    notes: list[str] = field(default_factory=list)
    requested_mode: str = ""
    fallback: str = ""
    accuracy_drop: float | None = None
    float_ops: list[str] = field(default_factory=list)
    denylisted: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def representative_dataset(dataset_dir: str, samples: int) -> Callable[[], Iterator[list]]:
    """A calibration generator: ``samples`` training examples drawn (seeded) across all
    shards, decoded by the training input pipeline (``input_pipeline.representative_samples``;
    memory: a bounded buffer). Every call yields the same examples."""
    info = schema.load_info(dataset_dir)
    return lambda: input_pipeline.representative_samples(info, "train", limit=samples)


def make_converter(
    saved_model_dir: str,
    config: TFLiteConfig,
    dataset_dir: str | None,
    float_builtins: bool = False,
):
    """A configured ``TFLiteConverter``; ``float_builtins`` lets int8 keep float kernels."""
    if not fsutil.exists(f"{saved_model_dir}/saved_model.pb"):
        raise ModelError(f"{saved_model_dir}: not a SavedModel directory (no saved_model.pb)")
    if config.mode == "int8" and not dataset_dir:
        raise ConfigError("int8 conversion needs dataset_dir for the representative dataset")
    converter = tf.lite.TFLiteConverter.from_saved_model(
        saved_model_dir, signature_keys=["serving_default"]
    )
    if config.mode == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if config.mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif config.mode == "int8":
        assert dataset_dir  # checked above; narrows the type
        converter.representative_dataset = representative_dataset(
            dataset_dir, config.representative_samples
        )
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if float_builtins:
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        converter.target_spec.supported_ops = ops
        if config.int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    return converter


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300] if text else ''}"


def _convert(converter) -> bytes:
    try:
        return converter.convert()
    except Exception as exc:  # the converter raises ConverterError, RuntimeError and others
        raise ConversionError(_first_line(exc)) from None


def _accuracy_drop(
    saved_model_dir: str, content: bytes, dataset_dir: str, config: TFLiteConfig
) -> PairedDrop:
    """Validation accuracy lost by ``content`` against the SavedModel, on the same examples."""
    import os
    import tempfile

    from tfopt.evaluation.runtime import Predictor

    info = schema.load_info(dataset_dir)
    split = "validation" if info.counts.get("validation") else "train"
    x, y = input_pipeline.load_arrays(info, split, limit=config.check_samples)
    ref = Predictor(saved_model_dir, "saved_model").predict(x).argmax(1)
    fd, tmp = tempfile.mkstemp(suffix=".tflite")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
        got = Predictor(tmp, "tflite").predict(x).argmax(1)
    finally:
        os.remove(tmp)
    return paired_drop(y, ref, got)


def _points(drop: PairedDrop | None) -> float | None:
    return None if drop is None else drop.drop_points


def _worst_layers(converter, dataset_dir: str, config: TFLiteConfig) -> list[str]:
    """Tensor names ordered by quantization error (mean squared error), worst first.

    Absolute error rather than RMSE / scale: a layer whose activation range is
    blown up by an outlier has a large scale, so RMSE / scale would hide it.
    """
    gen = representative_dataset(dataset_dir, min(config.representative_samples, 100))
    debugger = tf.lite.experimental.QuantizationDebugger(converter=converter, debug_dataset=gen)
    debugger.run()
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))

    def score(row):
        try:
            return float(row["mean_squared_error"])
        except (KeyError, ValueError):
            return 0.0

    rows.sort(key=score, reverse=True)
    return [r["tensor_name"] for r in rows if r.get("tensor_name")]


def _selective(
    saved_model_dir: str, dataset_dir: str, config: TFLiteConfig, notes: list[str]
) -> tuple[bytes, list[str], float | None] | None:
    """Keep the worst layers in float until the drop fits; ``None`` when it never does."""
    assert config.accuracy_limit is not None  # only called to meet a drop limit
    converter = make_converter(saved_model_dir, config, dataset_dir, float_builtins=True)
    try:
        ranked = _worst_layers(converter, dataset_dir, config)
    except Exception as exc:  # the debugger is experimental
        notes.append(f"selective quantization unavailable ({_first_line(exc)})")
        return None
    count = 1
    while count <= min(config.max_denylisted, len(ranked)):
        deny = ranked[:count]
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=deny)
        gen = representative_dataset(dataset_dir, min(config.representative_samples, 100))
        try:
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=make_converter(saved_model_dir, config, dataset_dir, True),
                debug_dataset=gen,
                debug_options=options,
            )
            content = debugger.get_nondebug_quantized_model()
        except Exception as exc:
            notes.append(
                f"selective quantization with {count} float layer(s) failed ({_first_line(exc)})"
            )
            return None
        drop = _accuracy_drop(saved_model_dir, content, dataset_dir, config)
        notes.append(f"selective int8 keeping {count} layer(s) in float: {drop.describe()}")
        if not drop.exceeds(config.max_accuracy_drop):
            return content, deny, drop.drop_points
        count *= 2
    return None


def _float16(saved_model_dir: str, config: TFLiteConfig, notes: list[str]) -> bytes:
    f16 = TFLiteConfig(mode="float16")
    try:
        content = _convert(make_converter(saved_model_dir, f16, None))
    except ConversionError as exc:
        notes.append(f"float16 fallback failed ({exc})")
        raise ConversionError(
            f"{saved_model_dir}: no TFLite model could be produced: " + "; ".join(notes)
        ) from None
    if config.int8_io:
        notes.append("float16 fallback has float32 input/output (int8_io not possible)")
    return content


def _convert_int8(
    saved_model_dir: str, config: TFLiteConfig, dataset_dir: str, notes: list[str]
) -> tuple[bytes, str, str, float | None, list[str]]:
    """int8 with its fallbacks -> (content, mode, fallback, drop, denylisted)."""
    check = config.accuracy_limit is not None
    try:
        content = _convert(make_converter(saved_model_dir, config, dataset_dir))
    except ConversionError as exc:
        if config.fallback == "none":
            raise ConversionError(
                f"{saved_model_dir}: TFLite int8 conversion failed ({exc}); fallback='none'"
            ) from None
        notes.append(f"int8 conversion failed ({exc})")
        if config.fallback == "selective":
            try:
                content = _convert(make_converter(saved_model_dir, config, dataset_dir, True))
                notes.append(
                    "fell back to int8 with float kernels for ops that have no int8 kernel"
                )
                drop = (
                    _accuracy_drop(saved_model_dir, content, dataset_dir, config) if check else None
                )
                # drop is None exactly when there is no limit to check
                if drop is None or not drop.exceeds(config.max_accuracy_drop):
                    return content, "int8", "selective", _points(drop), []
                notes.append(
                    f"int8 with float kernels: {drop.describe()} > {config.max_accuracy_drop:g}"
                )
            except ConversionError as exc2:
                notes.append(f"int8 with float kernels failed ({exc2})")
        notes.append("fell back to float16")
        content = _float16(saved_model_dir, config, notes)
        drop = _accuracy_drop(saved_model_dir, content, dataset_dir, config) if check else None
        return content, "float16", "float16", _points(drop), []
    if config.accuracy_limit is None:
        return content, "int8", "", None, []
    drop = _accuracy_drop(saved_model_dir, content, dataset_dir, config)
    budget = config.max_accuracy_drop
    if not drop.exceeds(budget):  # within the budget, or a drop that noise explains
        notes.append(f"int8 accuracy {drop.describe()}, budget {budget:g}: no fallback")
        return content, "int8", "", drop.drop_points, []
    notes.append(f"int8 accuracy {drop.describe()} > {budget:g}")
    if config.fallback == "none":
        notes.append("kept int8 (fallback='none')")
        return content, "int8", "", drop.drop_points, []
    if config.fallback == "selective":
        chosen = _selective(saved_model_dir, dataset_dir, config, notes)
        if chosen is not None:
            sel, deny, sel_drop = chosen
            notes.append(f"selective quantization kept in float: {', '.join(deny)}")
            return sel, "int8", "selective", sel_drop, deny
    notes.append("fell back to float16")
    content = _float16(saved_model_dir, config, notes)
    return (
        content,
        "float16",
        "float16",
        _accuracy_drop(saved_model_dir, content, dataset_dir, config).drop_points,
        [],
    )


def convert_to_tflite(
    saved_model_dir: str,
    dataset_dir: str | None,
    output_path: str,
    config: TFLiteConfig = TFLiteConfig(),
) -> QuantizeResult:
    """Convert a SavedModel (``serving_default``) to a ``.tflite`` file, atomically.

    ``dataset_dir`` (the train split calibrates int8, the validation split checks its
    accuracy) may be ``None`` for the other modes.

    Raises:
        ModelError: not a SavedModel.
        ConversionError: no model could be produced, fallbacks included.
    """
    notes: list[str] = []
    mode, fallback = config.mode, ""
    drop: float | None = None
    deny: list[str] = []
    float_ops: list[str] = []
    if config.mode == "int8":
        # "" for None: make_converter refuses int8 without a dataset, as before
        content, mode, fallback, drop, deny = _convert_int8(
            saved_model_dir, config, dataset_dir or "", notes
        )
        if mode == "int8":
            float_ops = float_ops_in_int8(content)
            if float_ops:
                notes.append(f"ops run in float inside the int8 model: {', '.join(float_ops)}")
    else:
        try:
            content = _convert(make_converter(saved_model_dir, config, dataset_dir))
        except ConversionError as exc:
            raise ConversionError(
                f"{saved_model_dir}: TFLite {config.mode} conversion failed ({exc})"
            ) from None
    with fsutil.atomic_file(output_path, "wb") as fh:
        fh.write(content)
    for note in notes:
        log.info("%s: %s", output_path, note)
    log.info("wrote %s (%s, %d bytes)", output_path, mode, len(content))
    return QuantizeResult(
        path=output_path,
        mode=mode,
        size_bytes=len(content),
        notes=notes,
        requested_mode=config.mode,
        fallback=fallback,
        accuracy_drop=drop,
        float_ops=float_ops,
        denylisted=deny,
    )


def apply(model_dir, dataset_dir, output_path, config, tensorboard_dir=None) -> registry.Outcome:
    """The technique's entry point (``tfopt.registry.Technique.apply``); nothing trains."""
    r = convert_to_tflite(model_dir, dataset_dir, output_path, config)
    return registry.Outcome(
        model={"quantization": r.mode, "fallback": r.fallback or None}, notes=r.notes
    )


TECHNIQUE = registry.register(
    registry.Technique(
        name="tflite",
        summary="SavedModel -> TFLite in one mode (float32, dynamic, float16, int8); int8 falls "
        "back (selective, then float16) when it loses more than max_accuracy_drop.",
        config=TFLiteConfig,
        apply=apply,
        variants=tuple(
            registry.Variant(
                f"tflite_{m}", "tflite", switch=f"enable_tflite_{m}", settings={"mode": m}
            )
            for m in MODES
        ),
        output_format="tflite",
    )
)
