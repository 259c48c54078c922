"""``tfopt inspect``: the pre-flight report on a model (what each technique can do to it)."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="per layer: prunable, QAT-quantizable, factorizable; TFLite ops and int8 kernels",
        description="Report, before any training, what pruning, QAT and low-rank "
        "factorization can do to MODEL (a SavedModel directory, .keras or .h5 file), "
        "and which TFLite ops its int8 conversion leaves in float.",
    )
    p.add_argument("model", metavar="MODEL", help="SavedModel directory, .keras or .h5 file")
    p.add_argument(
        "--dataset",
        default=None,
        help="a dataset artifact (ingest output): check the model against its features "
        "and take the input shape from it",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-convert", action="store_true", help="skip the TFLite conversion (faster)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfopt.compression import inspect
    from tfopt.training import models

    model = models.load_model(args.model)
    shape = None
    if args.dataset:
        from tfopt.data import schema

        info = schema.load_info(args.dataset)
        models.check_compatible(model, info.feature_shape, info.num_classes, args.model)
        shape = info.feature_shape
    report = inspect.inspect_model(model, input_shape=shape, convert=not args.no_convert)
    report["model"] = args.model
    print(json.dumps(report, indent=2) if args.json else inspect.format_inspect(report))
    return 0
