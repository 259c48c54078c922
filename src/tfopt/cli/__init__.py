"""The ``tfopt`` command line: run, compile, submit, schedule, serve, inspect, benchmark.

Each subcommand lives in its own module exposing ``register(subparsers)``;
this file only assembles them, so adding a command touches one list.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from tfopt import __version__
from tfopt.errors import TfoptError

COMMAND_MODULES = [
    "tfopt.cli.pipeline",  # run, compile
    "tfopt.cli.submit",  # submit, schedule create/list/delete
    "tfopt.cli.serve",  # serve
    "tfopt.cli.inspect",  # inspect
    # (new command modules go above this line)
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfopt",
        description="Train, compress, validate and deploy TensorFlow models "
        "with Kubeflow Pipelines.",
    )
    parser.add_argument("--version", action="version", version=f"tfopt {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except TfoptError as exc:
        print(f"tfopt {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
