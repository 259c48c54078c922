"""A model card (Markdown) for the selected model: data, metrics, size, latency, use, limits.

Follows the sections of Mitchell et al., "Model Cards for Model Reporting"
(model details, intended use, data, metrics, caveats), filled from the run
summary and the selected model's evaluation record.
"""

from __future__ import annotations

import platform

from tfopt.reporting.sections import class_label


def _kb(n) -> str:
    return f"{n / 1024:,.1f} KiB ({n:,} bytes)" if n is not None else "-"


def _origin_lines(origin: dict, fmt: str | None = None) -> list[str]:
    """Where the baseline came from: an imported model, a module file (its hash)."""
    lines = []
    if origin.get("source_uri"):
        lines.append(
            f"- Imported from `{origin['source_uri']}` ({origin.get('source_format', '?')}, "
            f"returning {origin.get('output', '?')})"
        )
    if origin.get("module_sha256"):
        lines.append(f"- Model code: module file, sha256 `{origin['module_sha256']}`")
    return lines + _keras_lines(origin, fmt)


def _keras_lines(origin: dict, fmt: str | None) -> list[str]:
    """Which Keras the model came from; for a Keras 3 one, its Keras 3 file (issue 30)."""
    k = origin.get("keras")
    if not k:  # a user's tf_keras model; a plain SavedModel has no Keras layers
        user = origin.get("source_uri") or origin.get("module_sha256")
        plain = origin.get("source_format") == "saved_model"
        return ["- Keras: Keras 2 (tf_keras)"] if user and not plain else []
    how = (
        f"translated to tf_keras, outputs equal within {k.get('max_abs_diff', 0):.1g} on "
        f"{k.get('checked_examples', '?')} examples"
        if k.get("translated")
        else f"imported as a plain SavedModel ({(k.get('untranslatable') or {}).get('why', '')})"
    )
    if fmt == "tflite":
        back = "the selected variant is a .tflite file (no Keras 3 file)"
    elif k.get("keras3_file"):
        back = f"Keras 3 file `{k['keras3_file']}` beside the SavedModel"
    else:
        back = f"no Keras 3 file ({k.get('keras3_note', 'not written')})"
    return [
        f"- Keras: Keras {k.get('version', '?')} model ({k.get('from', 'file')}), {how}; {back}"
    ]


def _vocabulary_lines(ds: dict, record: dict) -> list[str]:
    """Where a client finds the class names of the served model."""
    if not ds.get("class_names"):
        return []
    if record.get("format") == "tflite":
        return ["- Label vocabulary: not inside the `.tflite` file; output i is class i (Data)"]
    return [
        "- Label vocabulary: `assets/labels.txt` in the SavedModel (one name per line, in "
        "label-id order) and the `classes` of its `classify` signature"
    ]


def _no_model_card(summary: dict) -> str:
    """The card of a run that selected nothing: every candidate and why it was rejected."""
    rejected = [
        f"- `{v['name']}`: {'; '.join(v.get('rejected_reasons') or [])}"
        for v in summary.get("variants", [])
    ]
    return "\n".join(
        [
            f"# Model card: no model selected ({summary.get('pipeline', 'tfopt')})",
            "",
            "No candidate met the selection policy, so nothing is blessed for deployment.",
            "",
            "## Candidates and why they were rejected",
            "",
            *rejected,
            "",
        ]
    )


def _details_lines(record: dict, base: dict, ds: dict) -> list[str]:
    """Model details: the variant, its size, where it came from, its interface."""
    return [
        "## Model details",
        "",
        f"- Variant: `{record['name']}` ({record.get('format')})"
        + (f", derived from `{record['base']}`" if record.get("base") else "")
        + (f", quantization `{record['quantization']}`" if record.get("quantization") else ""),
        f"- Parameters: {record['params']:,}"
        if record.get("params") is not None
        else "- Parameters: -",
        f"- Weight sparsity (zero kernel weights): {record['sparsity']:.1%}"
        if record.get("sparsity") is not None
        else "- Weight sparsity: -",
        f"- Size: {_kb(record.get('size_bytes'))}; gzipped {_kb(record.get('gzip_bytes'))}",
        *_origin_lines(record.get("origin") or base.get("origin") or {}, record.get("format")),
        "- Interface: input `x` (float32 raw features; the model normalizes them itself), "
        "output `probabilities` (softmax over the classes)",
        *_vocabulary_lines(ds, record),
        "",
    ]


def _use_and_data_lines(ds: dict) -> list[str]:
    """Intended use and the data the metrics come from."""
    names = ds.get("class_names") or []
    named = f" (in label-id order: {', '.join(names)})" if names else ""
    return [
        "## Intended use",
        "",
        f"Classify examples drawn from the same distribution as the `{ds.get('name', '?')}` "
        f"dataset into its {ds.get('num_classes', '?')} classes, for example behind TF "
        "Serving / Vertex AI (SavedModel) or on device (TFLite). Not intended for inputs "
        "from another distribution, or for decisions about people without human review.",
        "",
        "## Data",
        "",
        f"- Dataset: `{ds.get('name', '?')}`; train {ds.get('num_train', '?')}, validation "
        f"{ds.get('num_validation', '?')}, test {ds.get('num_test', '?')} examples; "
        f"{ds.get('num_classes', '?')} classes" + named,
        "- Metrics below are on the held-out test split, which no training or calibration "
        "step saw.",
        "",
    ]


def _metrics_lines(summary: dict, record: dict, base: dict, ds: dict) -> list[str]:
    """The test-split metrics table, then the per-class F1."""
    drop = (
        (base.get("accuracy") - record["accuracy"]) * 100
        if base.get("accuracy") is not None
        else None
    )
    lines = [
        "## Metrics (test split)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| accuracy | {record['accuracy'] * 100:.2f}% |",
        f"| accuracy drop vs baseline `{summary.get('baseline')}` | "
        + (f"{drop:+.2f} points |" if drop is not None else "- |"),
        f"| loss (cross-entropy) | {record.get('loss', float('nan')):.4f} |",
        f"| macro precision / recall / F1 | {record['precision']:.3f} / "
        f"{record['recall']:.3f} / {record['f1']:.3f} |",
        f"| batch-1 latency p50 / p95 / p99 | {record['latency_ms_p50']:.4g} / "
        f"{record['latency_ms_p95']:.4g} / {record['latency_ms_p99']:.4g} ms |",
        f"| throughput (batch {record.get('throughput_batch_size')}) | "
        f"{record['throughput_per_s']:,.0f} examples/s |",
        f"| peak memory of the inference process | "
        f"{record.get('peak_rss_bytes', 0) / 2**20:,.0f} MiB (the model added "
        f"{record.get('memory_bytes', 0) / 2**20:,.1f} MiB to the process) |",
        "",
    ]
    f1 = (record.get("per_class") or {}).get("f1") or []
    if f1:
        per_class = ", ".join(f"{class_label(ds, i)}: {v:.3f}" for i, v in enumerate(f1))
        lines += ["Per-class F1: " + per_class, ""]
    return lines


def _limitations_lines(record: dict, ds: dict) -> list[str]:
    """Where the measurements hold, the test split's noise, the weakest classes."""
    f1 = (record.get("per_class") or {}).get("f1") or []
    weakest = sorted(range(len(f1)), key=lambda i: f1[i])[:3]
    lines = [
        "## Limitations and caveats",
        "",
        f"- Latency and memory were measured on the evaluation machine ({platform.machine()}, "
        f"{record.get('runtime')}, {record.get('latency_iterations')} timed calls"
        + (f", {record.get('num_threads')} thread(s)" if record.get("format") == "tflite" else "")
        + "), not on the serving hardware; measure again there.",
        f"- The test split has {record.get('num_test', '?')} examples; accuracy differences "
        "below about 1/sqrt(N) are within noise.",
    ]
    if weakest and f1:
        lines.append(
            "- Weakest classes by F1: "
            + ", ".join(f"{class_label(ds, i)}: {f1[i]:.3f}" for i in weakest)
            + "."
        )
    if record.get("format") == "tflite" and record.get("quantization") in ("int8", "dynamic"):
        lines.append(
            "- Quantized weights/activations: outputs differ slightly from the "
            "float model; recheck on data that drifts from the calibration set."
        )
    return lines


def model_card(summary: dict, record: dict | None) -> str:
    """Markdown model card; states plainly when no model was selected.

    Args:
        summary: the run summary (``summary.json`` payload).
        record: the selected variant's full evaluation record (None when none).
    """
    if not summary.get("selected") or record is None:
        return _no_model_card(summary)
    ds = summary.get("dataset") or {}
    base: dict = next((v for v in summary["variants"] if v["name"] == summary.get("baseline")), {})
    lines = [
        f"# Model card: `{record['name']}`",
        "",
        f"Selected and blessed by the `{summary.get('pipeline', 'tfopt')}` pipeline. "
        f"{summary.get('selection_reason') or ''}",
        "",
        *_details_lines(record, base, ds),
        *_use_and_data_lines(ds),
        *_metrics_lines(summary, record, base, ds),
        *_limitations_lines(record, ds),
        "",
    ]
    return "\n".join(lines)
