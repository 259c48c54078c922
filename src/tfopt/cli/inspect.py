"""``tfopt inspect``: the pre-flight report on a model (what each technique can do to it)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="per layer: prunable, QAT-quantizable, factorizable, FLOPs and channel groups; "
        "TFLite ops and int8 kernels",
        description="Report, before any training, what pruning, QAT and low-rank "
        "factorization can do to MODEL (a SavedModel directory, .keras or .h5 file), "
        "each layer's FLOPs and channel coupling group with the FLOPs and parameters "
        "structured pruning leaves at its target, and which TFLite ops its int8 "
        "conversion leaves in float.",
    )
    p.add_argument("model", metavar="MODEL", help="SavedModel directory, .keras or .h5 file")
    p.add_argument(
        "--dataset",
        default=None,
        help="a dataset artifact (ingest output): check the model against its features "
        "and take the input shape from it",
    )
    p.add_argument(
        "--flops-fraction",
        type=float,
        default=None,
        help="structured pruning's target: the fraction of FLOPs to remove (default: "
        "channel_prune's flops_fraction)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-convert", action="store_true", help="skip the TFLite conversion (faster)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfopt.compression import inspect
    from tfopt.training import keras3, models

    try:
        model = models.load_model(args.model)
    except keras3.NoEquivalentError as exc:  # a Keras 3 file: what the layer blocks
        report = _blocked_report(args.model, exc)
        print(json.dumps(report, indent=2) if args.json else inspect.format_inspect(report))
        return 0
    shape = None
    if args.dataset:
        from tfopt.data import schema

        info = schema.load_info(args.dataset)
        models.check_compatible(model, info.feature_shape, info.num_classes, args.model)
        shape = info.feature_shape
    settings = {}
    if args.flops_fraction is not None:
        settings["channel_prune"] = {"flops_fraction": args.flops_fraction}
    report = inspect.inspect_model(
        model, input_shape=shape, convert=not args.no_convert, settings=settings
    )
    report["model"] = args.model
    print(json.dumps(report, indent=2) if args.json else inspect.format_inspect(report))
    return 0


def _blocked_report(path: str, exc) -> dict:
    """The report on a Keras 3 file with a layer that has no tf_keras equivalent: per layer
    of the Keras 3 model, every technique that trains weights is blocked, and by what."""
    from tfopt import registry
    from tfopt.compression import inspect
    from tfopt.training import keras3

    version = keras3.file_version(path) or "3"
    source = keras3.load(path, path, {}, version)
    planners = [t.name for t in registry.techniques() if t.plan]
    rows = []
    for layer in source.layers:
        why = (
            f"no tf_keras equivalent: {exc.why}"
            if layer.name == exc.layer
            else f"blocked by layer {exc.layer!r} ({exc.cls}), which has no tf_keras equivalent"
        )
        answers = {n: {"applies": False, "reason": why} for n in planners}
        rows.append(
            {
                "name": layer.name,
                "type": type(layer).__name__,
                "params": int(layer.count_params()),
                "techniques": answers,
                **inspect._flat_keys(answers),
                "factorize_saving": 0,
                "factorize_rank": None,
            }
        )
    total = int(source.count_params())
    entry = keras3.origin(
        version,
        "file",
        False,
        untranslatable={"layer": exc.layer, "class": exc.cls, "why": exc.why},
    )
    entry["blocks"] = [t.name for t in registry.techniques() if t.needs_keras]
    return {
        "model": path,
        "input_shape": [int(d) for d in source.inputs[0].shape[1:] if d is not None],
        "nested_models": [],
        "params": total,
        "float32_bytes": 4 * total,
        "layers": rows,
        "coverage": {
            "prunable_param_fraction": 0.0,
            "qat_param_fraction": 0.0,
            "factorizable_layers": [],
            "factorize_saving": 0,
            "techniques": {n: {"layers": [], "param_fraction": 0.0} for n in planners},
        },
        "channel_prune": None,
        "tflite": None,
        "keras": entry,
    }
