"""Pre-flight report: what each technique can do to a model, before any training.

Per layer: parameters, and for every registered technique with a per-layer planner
(``Technique.plan``: pruning, low-rank factorization, QAT, clustering ...) whether it
applies and why not, under ``techniques``; the answers come from the same functions the
techniques plan with, on the model flattened as they flatten it. The older flat keys
(``prunable`` / ``prune_reason``, ``qat`` / ``qat_reason``, ``factorizable`` /
``factorize_reason`` with low-rank's saving and rank) are kept for their readers.
Per layer too, its FLOPs, output channels and channel coupling group, and under
``channel_prune`` the FLOPs and parameters structured pruning leaves at its
``flops_fraction`` (``channel_preflight``: the channels chosen, nothing trained).
With ``convert``, the model is converted to TFLite float32 and to int8 (calibrated on
a small random set, float kernels allowed as a fallback): the report lists the ops and
those the int8 model still runs in float (no int8 kernel, or not quantized).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping

import numpy as np

from tfopt import registry
from tfopt._keras import keras, tf
from tfopt.compression import (
    channel_preflight,
    lowrank,
    prune,
    techniques,  # noqa: F401 - registers every technique
    tflite,
)
from tfopt.compression.common import flatten_nested, kernel_of, layer_params
from tfopt.errors import ConfigError
from tfopt.training import keras3, models

CALIBRATION_SAMPLES = 16


def _input_shape(model: keras.Model, input_shape) -> tuple[int, ...]:
    shape = tuple(model.input_shape[1:]) if input_shape is None else tuple(input_shape)
    if any(d is None for d in shape) or any(int(d) < 1 for d in shape):
        raise ConfigError(
            f"input_shape={shape}: give every dimension (the model takes "
            f"{tuple(model.input_shape[1:])})"
        )
    return tuple(int(d) for d in shape)


def _configs(
    keep_dense: tuple[str, ...], rank: int, energy: float, settings: Mapping[str, Mapping] | None
) -> dict:
    """Each registered technique's config: its defaults, updated by the arguments."""
    values: dict[str, dict] = {
        "prune": {"keep_dense": tuple(keep_dense)},
        "lowrank": {"rank": rank, "energy": energy},
    }
    for name, given in (settings or {}).items():
        values[name] = {**values.get(name, {}), **given}
    return {t.name: t.make_config(values.get(t.name, {})) for t in registry.techniques()}


def _layer_rows(flat: keras.Model, plans: dict, factors: dict) -> list[dict]:
    """A row per layer (input layers aside): its parameters and each technique's answer."""
    layers = []
    for layer in flat.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        row = {
            "name": layer.name,
            "type": type(layer).__name__,
            "params": layer_params(layer),
            "techniques": {
                name: {"applies": plan[layer.name][0], "reason": plan[layer.name][1]}
                for name, plan in plans.items()
            },
        }
        f = factors[layer.name]
        row.update(_flat_keys(row["techniques"]))
        row["factorize_saving"] = f["params_before"] - f["params_after"] if f["factorizable"] else 0
        row["factorize_rank"] = f.get("rank")
        layers.append(row)
    return layers


def _coverage(flat: keras.Model, layers: list[dict], plans: dict, total: int) -> dict:
    """What share of the parameters each technique covers (and the older flat keys)."""
    pruned = sum(
        int(np.prod(k.shape))
        for la in flat.layers
        if plans["prune"].get(la.name, (False, ""))[0] and (k := kernel_of(la)) is not None
    )
    coverage = {
        name: {
            "layers": [r["name"] for r in layers if r["techniques"][name]["applies"]],
            "param_fraction": sum(r["params"] for r in layers if r["techniques"][name]["applies"])
            / max(total, 1),
        }
        for name in plans
    }
    return {
        "prunable_param_fraction": pruned / max(total, 1),
        "qat_param_fraction": coverage["qat"]["param_fraction"],
        "factorizable_layers": coverage["lowrank"]["layers"],
        "factorize_saving": sum(r["factorize_saving"] for r in layers),
        "techniques": coverage,
    }


def inspect_model(
    model: keras.Model | str,
    input_shape=None,
    convert: bool = True,
    keep_dense: tuple[str, ...] = (prune.AUTO,),
    rank: int = 0,
    energy: float = 0.9,
    settings: Mapping[str, Mapping] | None = None,
) -> dict:
    """A JSON-able report on ``model`` (a tf_keras model or a path: SavedModel, ``.keras``,
    ``.h5``); ``input_shape`` (no batch) is needed only where the model's has ``None``.

    Each technique answers for its config: its defaults, updated by ``settings``
    (technique name -> setting values); ``keep_dense``, ``rank`` and ``energy`` are
    pruning's and low-rank's settings (the techniques' defaults).
    """
    source = model if isinstance(model, str) else None
    loaded = models.load_model(model) if isinstance(model, str) else model
    shape = _input_shape(loaded, input_shape)
    flat = flatten_nested(loaded)
    configs = _configs(keep_dense, rank, energy, settings)
    # low-rank's plan with its sizes (one SVD per layer, not two)
    factors = lowrank.factorizability(flat, configs["lowrank"])
    plans = {
        t.name: lowrank.as_plan(factors) if t.name == "lowrank" else t.plan(flat, configs[t.name])
        for t in registry.techniques()
        if t.plan
    }
    layers = _layer_rows(flat, plans, factors)
    channel_rows, channel_section = channel_preflight.channel_report(flat, configs["channel_prune"])
    for row in layers:
        row.update(channel_rows[row["name"]])
    total = models.count_params(flat)
    return {
        "model": source or loaded.name,
        "input_shape": list(shape),
        "nested_models": [la.name for la in loaded.layers if isinstance(la, keras.Model)],
        "params": total,
        "float32_bytes": 4 * total,
        "layers": layers,
        "coverage": _coverage(flat, layers, plans, total),
        "channel_prune": channel_section,
        "tflite": _convert_report(flat, shape) if convert else None,
        "keras": keras_entry(loaded, source),
    }


def keras_entry(model, path: str | None) -> dict:
    """Which Keras the model came from (issue 30); for a Keras 3 layer with no tf_keras
    equivalent, the techniques it blocks."""
    entry = keras3.report_entry(model, path)
    if entry.get("untranslatable"):
        entry["blocks"] = [t.name for t in registry.techniques() if t.needs_keras]
    return entry


# The flat per-layer keys of the first techniques with a planner (their readers predate
# ``techniques``): technique -> (applies key, reason key)
_FLAT_KEYS = {
    "prune": ("prunable", "prune_reason"),
    "qat": ("qat", "qat_reason"),
    "lowrank": ("factorizable", "factorize_reason"),
}


def _flat_keys(answers: dict) -> dict:
    out = {}
    for name, (applies, reason) in _FLAT_KEYS.items():
        out[applies], out[reason] = answers[name]["applies"], answers[name]["reason"]
    return out


def _convert_report(model: keras.Model, shape: tuple[int, ...]) -> dict:
    rng = np.random.default_rng(0)
    samples = rng.standard_normal((CALIBRATION_SAMPLES, *shape)).astype(np.float32)
    tmp = tempfile.mkdtemp(prefix="tfopt-inspect-")
    try:
        saved = os.path.join(tmp, "model")
        models.save_for_conversion(model, saved)

        def converter():
            return tf.lite.TFLiteConverter.from_saved_model(
                saved, signature_keys=["serving_default"]
            )

        try:
            float_content = converter().convert()
            c = converter()
            c.optimizations = [tf.lite.Optimize.DEFAULT]
            c.representative_dataset = lambda: ([samples[i : i + 1]] for i in range(len(samples)))
            # float builtins allowed: an op without an int8 kernel stays float, and is listed
            c.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                tf.lite.OpsSet.TFLITE_BUILTINS,
            ]
            int8_content = c.convert()
        except Exception as exc:  # the converter raises many types
            return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}"}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ops = tflite.op_types(int8_content)
    float_ops = tflite.float_ops_in_int8(int8_content)
    return {
        "float32_bytes": len(float_content),
        "int8_bytes": len(int8_content),
        "float32_ops": tflite.op_types(float_content),
        "int8_ops": ops,
        "op_counts": dict(Counter(_op_list(int8_content))),
        "float_ops_in_int8": float_ops,
        "int8_kernels": {op: op not in float_ops for op in ops if op not in _IO_OPS},
    }


_IO_OPS = ("QUANTIZE", "DEQUANTIZE")


def _op_list(content: bytes) -> list[str]:
    from tfopt.evaluation import runtime

    try:
        return [d["op_name"] for d in runtime.interpreter_from_content(content)._get_ops_details()]
    except Exception:  # introspection is best effort
        return []


def format_inspect(report: dict) -> str:
    """``inspect_model``'s report as a text table and summary lines."""
    names = list(report["layers"][0]["techniques"]) if report["layers"] else []
    rows = [("layer", "type", "params", "FLOPs", "channels", "group", *names, "notes")]
    for r in report["layers"]:
        answers = r["techniques"]
        why = "; ".join(
            f"{n}: {answers[n]['reason']}"
            for n in names
            if answers[n]["reason"] and not answers[n]["reason"].startswith("no kernel")
        )
        cells = [
            ("y" if answers[n]["applies"] else "n")
            if n != "lowrank"
            else (f"-{r['factorize_saving']}" if answers[n]["applies"] else "-")
            for n in names
        ]
        rows.append((r["name"], r["type"], str(r["params"]), *_channel_cells(r), *cells, why))
    last = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(last)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row[:last], widths, strict=True)) + "  " + row[last]
        for row in rows
    ]
    cov = report["coverage"]
    lines += [
        "",
        f"model {report['model']}: input {tuple(report['input_shape'])}, "
        f"{report['params']} params ({report['float32_bytes'] / 1e6:.2f} MB float32)",
        f"prunable: {cov['prunable_param_fraction']:.1%} of parameters; "
        f"QAT-quantized: {cov['qat_param_fraction']:.1%}; "
        f"low-rank: {len(cov['factorizable_layers'])} layers, saving {cov['factorize_saving']} "
        "params",
    ]
    others = [n for n in cov.get("techniques", {}) if n not in _FLAT_KEYS]
    if others:
        lines.append(
            "; ".join(
                f"{n}: {cov['techniques'][n]['param_fraction']:.1%} of parameters" for n in others
            )
        )
    lines += channel_preflight.format_section(report.get("channel_prune"))
    if report.get("keras"):
        lines.append(f"Keras: {keras3.describe(report['keras'])}")
        if report["keras"].get("blocks"):
            lines.append(
                f"blocked by that layer: {', '.join(report['keras']['blocks'])}; the "
                "post-training variants (TFLite, LiteRT) and distillation (as teacher) apply"
            )
    if report.get("nested_models"):
        lines.append(f"nested models (flattened): {', '.join(report['nested_models'])}")
    t = report.get("tflite")
    if t and "error" in t:
        lines.append(f"TFLite conversion failed: {t['error']}")
    elif t:
        lines += [
            f"TFLite: float32 {t['float32_bytes']} bytes, int8 {t['int8_bytes']} bytes "
            f"({t['int8_bytes'] / max(t['float32_bytes'], 1):.0%})",
            f"int8 ops: {', '.join(t['int8_ops'])}",
            "ops left in float in the int8 model: " + (", ".join(t["float_ops_in_int8"]) or "none"),
        ]
    return "\n".join(lines)


def _channel_cells(row: dict) -> tuple[str, str, str]:
    """A row's FLOPs (before -> after the channel_prune target), output channels (-> kept)
    and coupling group; blank where the report has none (a blocked Keras 3 file)."""

    def before_after(before, after, text) -> str:
        if not before:
            return ""
        return text(before) if after in (None, before) else f"{text(before)}->{text(after)}"

    return (
        before_after(row.get("flops"), row.get("flops_after"), channel_preflight.si),
        before_after(row.get("channels"), row.get("channels_kept"), str),
        row.get("channel_group") or "",
    )
