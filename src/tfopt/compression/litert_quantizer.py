"""Float ``.tflite`` -> quantized ``.tflite`` with LiteRT Quantizer recipes.

LiteRT's maintained post-training path: the converter exports a float model,
LiteRT Quantizer (``litert-quantizer``, installed after the venv's
site-packages, see ``requirements/litert.txt``) quantizes it. Recipes:

- ``int8``: static int8 weights and activations (calibrated);
- ``int16x8``: static int16 activations, int8 weights (calibrated);
- ``dynamic``: int8 weights, activations quantized at run time;
- ``int4_weight_only``: int4 weights dequantized before float compute;
- ``mixed``: int4 weights where the measured error allows, int8 elsewhere.

The mixed rule: quantize every op's weights to int4, validate against the
float model on validation examples, and give int8 weights to every op with
weights whose output SNR is below ``mixed_min_snr_db`` (20 dB: error power at
most 1% of the signal's). Errors accumulate downstream, so the rule leans
towards int8 (the safe side).

Selective float fallback (any recipe): after quantizing, among the ops whose
output SNR is below ``min_snr_db``, the one losing the most SNR against its
activation inputs (where the error enters; what follows mostly inherits it)
is kept in float, the model is quantized again, and so on up to
``max_float_ops`` ops. The result lists the worst tensors and what was kept
in float.

A recipe that quantizes nothing in the model (no op supports it) raises
:class:`ModelError`, so the pipeline rejects that variant with the reason.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt import fsutil, registry
from tfopt.compression import litert_model
from tfopt.compression.litert_model import QuantizerUnavailableError  # the reader raises it too
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError, ModelError
from tfopt.settings import check_settings, setting

log = logging.getLogger(__name__)

EXACT_DB = 200.0  # the SNR reported for a tensor identical to the float one
RECIPES = registry.LITERT_RECIPES  # int8, int16x8, dynamic, int4_weight_only, mixed
# The tensor type each recipe must put in the model (else it did not apply).
EXPECTED_TYPE = {
    "int8": "INT8",
    "int16x8": "INT16",
    "dynamic": "INT8",
    "int4_weight_only": "INT4",
    "mixed": "INT4",  # or INT8: the rule may give every op int8 weights
}


@dataclass(frozen=True)
class LiteRTQuantizeConfig:
    """How to quantize: each field is a setting (``tfopt.settings``), described where declared.

    ``None`` is still taken for ``min_snr_db`` (no selective fallback: ``max_float_ops``
    becomes 0) and ``max_accuracy_drop`` (no check: -1), their old spelling.
    """

    recipe: str = setting(
        "int8",
        "LiteRT Quantizer recipe: int8, int16x8 (int16 activations), dynamic, "
        "int4_weight_only or mixed (int4 weights where the measured error allows, else int8).",
        choices=RECIPES,
    )
    calibration_samples: int = setting(
        64, "Training examples for calibration (static recipes).", low=1, high=100_000
    )
    validation_samples: int = setting(
        16, "Validation examples for the per-tensor comparison.", low=1, high=10_000
    )
    min_snr_db: float = setting(
        10.0,
        "Selective fallback floor: ops whose output SNR (dB, against the float model) is "
        "below it are kept in float, up to max_float_ops of them.",
        low=-100.0,
        high=200.0,
    )
    max_float_ops: int = setting(
        4, "Most ops the selective fallback may keep in float (0 turns it off).", low=0, high=1000
    )
    mixed_min_snr_db: float = setting(
        20.0,
        "mixed only: an op keeps int4 weights when its output SNR under int4 is at least "
        "this (dB), else it gets int8 weights.",
        low=-100.0,
        high=200.0,
    )
    max_accuracy_drop: float = setting(
        -1.0,
        "Accuracy points the variant may lose against the float model on the validation "
        "split; beyond it the recipe is rejected. -1 (any value < 0) turns the check off.",
        low=-1.0,
        high=100.0,
    )
    check_samples: int = setting(
        2000, "Validation examples for the accuracy check.", low=1, high=10_000_000
    )
    report_tensors: int = setting(
        5, "How many of the worst tensors the result lists.", low=1, high=1000
    )

    def __post_init__(self):
        if self.min_snr_db is None:
            object.__setattr__(self, "min_snr_db", 10.0)
            object.__setattr__(self, "max_float_ops", 0)
        if self.max_accuracy_drop is None:
            object.__setattr__(self, "max_accuracy_drop", -1.0)
        check_settings(self)


@dataclass(frozen=True)
class LiteRTQuantizeResult:
    """What was written.

    Attributes:
        recipe: the recipe applied.
        size_bytes / float_size_bytes: the quantized and the float file.
        tensor_types: tensor count per flatbuffer type (``INT4``, ``INT8`` ...).
        worst_tensors: ``{"name", "snr_db", "mse"}`` of the worst op outputs, worst first.
        float_ops: op outputs the selective fallback kept in float.
        int8_ops: ``mixed`` only: ops given int8 weights by the rule.
        accuracy / float_accuracy / accuracy_drop: validation split, when checked.
        notes: what was done and why, for people.
    """

    path: str
    recipe: str
    size_bytes: int
    float_size_bytes: int
    tensor_types: dict[str, int] = field(default_factory=dict)
    worst_tensors: list[dict] = field(default_factory=list)
    float_ops: list[str] = field(default_factory=list)
    int8_ops: list[str] = field(default_factory=list)
    accuracy: float | None = None
    float_accuracy: float | None = None
    accuracy_drop: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _quantizer_api():
    try:
        from litert_quantizer import qtyping, quantizer
        from litert_quantizer.algorithm_manager import AlgorithmName
        from litert_quantizer.utils.validation_utils import ValidationErrorMetric
    except ImportError as exc:
        raise QuantizerUnavailableError(
            f"litert-quantizer is not importable here ({exc}); install requirements/litert.txt "
            "as the Makefile's .venv/.installed target does"
        ) from None
    return quantizer, qtyping, AlgorithmName, ValidationErrorMetric


def _anchored(name: str) -> str:
    """The regex of the op whose first output is ``name``: LiteRT Quantizer's op scope is
    its output names, each followed by ``;``."""
    return "^" + re.escape(name) + ";"


def _build(float_content: bytes, recipe: str, int8_ops=(), float_ops=()):
    """A ``Quantizer`` for ``recipe``; later entries win, so overrides come last."""
    quantizer, qtyping, algo, _ = _quantizer_api()
    q = quantizer.Quantizer(float_content)
    every = qtyping.TFLOperationName.ALL_SUPPORTED
    if recipe in ("int8", "int16x8"):
        q.add_static_config(".*", every, 8 if recipe == "int8" else 16, 8)
    elif recipe == "dynamic":
        q.add_dynamic_config(".*", every, 8)
    else:  # int4_weight_only, mixed
        q.add_weight_only_config(".*", every, 4)
        for name in int8_ops:
            q.add_weight_only_config(_anchored(name), every, 8)
    for name in float_ops:
        q.update_quantization_recipe(_anchored(name), every, algorithm_key=algo.NO_QUANTIZE)
    return q


def _run(q, calibration: dict) -> bytes:
    try:
        result = q.calibrate(calibration) if q.need_calibration else None
        return bytes(q.quantize(result, enable_progress_report=False).quantized_model)
    except (ValueError, RuntimeError, KeyError, NotImplementedError) as exc:
        text = str(exc).strip().splitlines()
        raise ModelError(
            f"LiteRT Quantizer failed ({type(exc).__name__}: {text[0][:300] if text else ''})"
        ) from None


def _errors(q, validation: dict, op_outputs: list[str]) -> dict[str, tuple[float, float]]:
    """``{op output: (snr_db, mse)}`` of the last quantized model against the float one."""
    *_, metric = _quantizer_api()
    try:
        result = q.validate(validation, error_metrics=[metric.SNR, metric.MSE], num_threads=1)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(
            f"LiteRT Quantizer validation failed ({type(exc).__name__}: {exc})"
        ) from None
    rows = result.get_all_tensor_results()
    out = {}
    for name in op_outputs:
        if name in rows:
            mse, snr = float(rows[name].get("mse", 0.0)), rows[name].get("snr", math.inf)
            snr_db = EXACT_DB if mse == 0 else 10.0 * math.log10(snr) if snr > 0 else -EXACT_DB
            out[name] = (min(snr_db, EXACT_DB), mse)
    return out


def _entry_point(graph, errors: dict, floor: float, kept: list[str]) -> str | None:
    """The op below ``floor`` that loses the most SNR against its activation inputs (graph
    inputs are exact): where the error enters; what follows it mostly inherits it."""
    best, best_loss = None, -math.inf
    for name, inputs in graph:
        if name in kept or name not in errors or errors[name][0] >= floor:
            continue
        before = min((errors[i][0] for i in inputs if i in errors), default=EXACT_DB)
        loss = before - errors[name][0]
        if loss > best_loss:
            best, best_loss = name, loss
    return best


def _samples(dataset_dir: str, split: str, limit: int) -> np.ndarray:
    info = schema.load_info(dataset_dir)
    if not info.counts.get(split):
        split = "train"
    return input_pipeline.load_arrays(info, split, limit=limit)[0].astype(np.float32)


def _feed(signature: str, input_name: str, x: np.ndarray) -> dict:
    return {signature: [{input_name: x[i : i + 1]} for i in range(len(x))]}


def _inputs(float_path: str, content: bytes, dataset_dir: str) -> tuple[str, str]:
    """(signature key, input name) of the model, whose inputs must be the dataset's."""
    signature, input_name, shape = litert_model.signature_input(content, float_path)
    features = tuple(schema.load_info(dataset_dir).feature_shape)
    if shape != features:
        raise ModelError(
            f"{float_path}: the model takes inputs of shape {shape}, but the dataset's "
            f"examples have shape {features}"
        )
    return signature, input_name


def _quantize(
    content: bytes,
    config: LiteRTQuantizeConfig,
    graph,
    calibration: dict,
    validation: dict,
    notes: list[str],
) -> tuple[bytes, dict, list[str], list[str]]:
    """Quantize with ``config.recipe`` (int8 weights where the mixed rule says), then keep the
    worst entry point in float and quantize again while one is below ``min_snr_db``, up to
    ``max_float_ops``: (quantized, errors, ops given int8 weights, ops kept in float)."""
    op_outputs = [name for name, _ in graph]
    int8_ops: list[str] = []
    if config.recipe == "mixed":
        q = _build(content, "mixed")
        _run(q, calibration)
        errors = _errors(q, validation, op_outputs)
        weighted = litert_model.weight_op_names(content)
        int8_ops = [n for n in weighted if n in errors and errors[n][0] < config.mixed_min_snr_db]
        notes.append(
            f"mixed: {len(int8_ops)} op(s) below {config.mixed_min_snr_db:g} dB SNR under int4 "
            "got int8 weights"
        )
    float_ops: list[str] = []
    q = _build(content, config.recipe, int8_ops)
    quantized = _run(q, calibration)
    errors = _errors(q, validation, op_outputs)
    while len(float_ops) < config.max_float_ops:
        entry = _entry_point(graph, errors, config.min_snr_db, float_ops)
        if entry is None:
            break
        float_ops.append(entry)
        notes.append(f"kept {entry} in float (SNR {errors[entry][0]:.1f} dB)")
        q = _build(content, config.recipe, int8_ops, float_ops)
        quantized = _run(q, calibration)
        errors = _errors(q, validation, op_outputs)
    return quantized, errors, int8_ops, float_ops


def _check_applied(
    float_path: str, content: bytes, quantized: bytes, recipe: str, int8_ops: list[str]
) -> Counter:
    """The quantized model's tensor types; fails when the recipe's type is not among them."""
    types = litert_model.tensor_types(quantized)
    expected = EXPECTED_TYPE[recipe]
    if recipe == "mixed" and int8_ops:
        expected = "INT8"
    if not types.get(expected):
        ops = ", ".join(litert_model.op_types(content))
        raise ModelError(
            f"{float_path}: recipe {recipe!r} does not apply: no {expected} tensor after "
            f"quantization (no op supports it; ops: {ops})"
        )
    return types


def quantize_tflite(
    float_path: str,
    dataset_dir: str | None,
    output_path: str,
    config: LiteRTQuantizeConfig = LiteRTQuantizeConfig(),
) -> LiteRTQuantizeResult:
    """Quantize the float TFLite model at ``float_path`` with ``config.recipe``, atomically.

    Raises:
        ConfigError: no ``dataset_dir``.
        ModelError: not a float TFLite model with one signature input, the recipe quantizes
            nothing in it, LiteRT Quantizer fails, or the accuracy drop is too large.
    """
    if not dataset_dir:
        raise ConfigError("LiteRT quantization needs dataset_dir (calibration and validation)")
    content = litert_model.read_float_model(float_path)
    signature, input_name = _inputs(float_path, content, dataset_dir)
    graph = litert_model.op_graph(content)
    _quantizer_api()  # fail before loading data when the package is missing
    calibration = _feed(
        signature, input_name, _samples(dataset_dir, "train", config.calibration_samples)
    )
    validation = _feed(
        signature, input_name, _samples(dataset_dir, "validation", config.validation_samples)
    )
    notes: list[str] = []
    quantized, errors, int8_ops, float_ops = _quantize(
        content, config, graph, calibration, validation, notes
    )
    types = _check_applied(float_path, content, quantized, config.recipe, int8_ops)
    worst = sorted(errors.items(), key=lambda kv: kv[1][0])[: config.report_tensors]
    worst_rows = [{"name": n, "snr_db": round(s, 2), "mse": m} for n, (s, m) in worst]
    if worst_rows:
        notes.append(f"worst tensor {worst_rows[0]['name']}: {worst_rows[0]['snr_db']:.1f} dB SNR")
    accuracy, float_accuracy, drop = _checked_accuracy(
        float_path, content, quantized, dataset_dir, config, float_ops
    )
    with fsutil.atomic_file(output_path, "wb") as fh:
        fh.write(quantized)
    log.info("wrote %s (%s, %d bytes): %s", output_path, config.recipe, len(quantized), notes)
    return LiteRTQuantizeResult(
        path=output_path,
        recipe=config.recipe,
        size_bytes=len(quantized),
        float_size_bytes=len(content),
        tensor_types=dict(types),
        worst_tensors=worst_rows,
        float_ops=float_ops,
        int8_ops=int8_ops,
        accuracy=accuracy,
        float_accuracy=float_accuracy,
        accuracy_drop=drop,
        notes=notes,
    )


def _checked_accuracy(
    float_path: str,
    content: bytes,
    quantized: bytes,
    dataset_dir: str,
    config: LiteRTQuantizeConfig,
    float_ops: list[str],
) -> tuple[float | None, float | None, float | None]:
    """(quantized accuracy, float accuracy, drop in points) on the validation split, through
    the TFLite runtime, when checked; fails when the drop is over the limit."""
    if config.max_accuracy_drop < 0:
        return None, None, None
    from tfopt.evaluation.runtime import TFLiteModel

    info = schema.load_info(dataset_dir)
    split = "validation" if info.counts.get("validation") else "train"
    x, y = input_pipeline.load_arrays(info, split, limit=config.check_samples)
    out = []
    for model in (quantized, content):
        pred = TFLiteModel.from_content(model).predict(x.astype(np.float32)).argmax(1)
        out.append(float(np.mean(pred == y)))
    accuracy, float_accuracy = out
    drop = (float_accuracy - accuracy) * 100.0
    if drop > config.max_accuracy_drop + 1e-9:
        raise ModelError(
            f"{float_path}: recipe {config.recipe!r} loses {drop:.2f} accuracy points "
            f"against the float model (> {config.max_accuracy_drop:g}) with "
            f"{len(float_ops)} op(s) kept in float"
        )
    return accuracy, float_accuracy, drop


def apply(model_dir, dataset_dir, output_path, config, tensorboard_dir=None) -> registry.Outcome:
    """The technique's entry point (``tfopt.registry.Technique.apply``): ``model_dir`` is
    the float ``.tflite`` file of the ``tflite_float32`` variant."""
    r = quantize_tflite(model_dir, dataset_dir, output_path, config)
    return registry.Outcome(
        model={
            "quantization": f"litert_{r.recipe}",
            "tensor_types": r.tensor_types,
            "worst_tensors": r.worst_tensors,
            "float_ops": r.float_ops,
            "int8_ops": r.int8_ops,
        },
        notes=r.notes,
    )


def type_counts(path: str) -> Counter:
    """Tensor count per flatbuffer type of the ``.tflite`` file at ``path``."""
    from tfopt._keras import tf

    with tf.io.gfile.GFile(path, "rb") as fh:
        return litert_model.tensor_types(fh.read())


TECHNIQUE = registry.register(
    registry.Technique(
        name="litert",
        summary="LiteRT Quantizer recipes on the float TFLite file (int8, int16x8, dynamic, "
        "int4 weight-only, mixed int4/int8), with a selective float fallback.",
        config=LiteRTQuantizeConfig,
        apply=apply,
        # off by default: five more steps
        variants=tuple(
            registry.Variant(
                f"litert_{r}",
                "litert",
                base="tflite_float32",
                switch="enable_litert_quantizer",
                settings={"recipe": r},
                default=False,
            )
            for r in RECIPES
        ),
        output_format="tflite",
    )
)
