"""``tfopt serve``: serve a model repository with TF Serving's gRPC and REST APIs."""

from __future__ import annotations

import argparse
import logging
import signal

from tfopt.errors import ConfigError

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve <model-base-path>/<model-name>/<version>/ locally",
        description="Serve a TF Serving model repository with TF Serving's gRPC "
        "(PredictionService, ModelService) and REST APIs; new versions are "
        "picked up by polling. For development and CI; production uses the "
        "tensorflow/serving image.",
    )
    p.add_argument(
        "--model-base-path",
        required=True,
        help="repository root; the model is at <DIR>/<NAME>/<version>/",
    )
    p.add_argument("--model-name", required=True, help="model name clients use")
    p.add_argument(
        "--model-config-file",
        default=None,
        help="models.config with version policy and labels "
        "(default <DIR>/models.config when present)",
    )
    p.add_argument("--grpc-port", type=int, default=8500, help="gRPC port (0 = any free)")
    p.add_argument("--rest-port", type=int, default=8501, help="REST port (0 = any free)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    p.add_argument(
        "--poll-seconds",
        type=float,
        default=2.0,
        help="how often the base path and config are re-read",
    )
    p.add_argument(
        "--max-request-bytes", type=int, default=16 << 20, help="largest request body accepted"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tfopt import fsutil
    from tfopt.deploy.serving.server import ModelServer

    if args.poll_seconds <= 0:
        raise ConfigError(f"--poll-seconds={args.poll_seconds} is not allowed: expected > 0")
    for port in (args.grpc_port, args.rest_port):
        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} is not allowed: expected 0..65535")
    if not fsutil.exists(args.model_base_path):
        raise ConfigError(f"--model-base-path={args.model_base_path!r} does not exist")
    server = ModelServer(
        args.model_base_path,
        args.model_name,
        config_file=args.model_config_file,
        host=args.host,
        grpc_port=args.grpc_port,
        rest_port=args.rest_port,
        poll_seconds=args.poll_seconds,
        max_request_bytes=args.max_request_bytes,
    )
    try:
        server.start()
    except OSError as exc:
        raise ConfigError(f"cannot start the server: {exc}") from None
    # One parseable line so scripts (and tests) can find ports chosen with 0.
    print(
        f"serving model={args.model_name} grpc={args.host}:{server.grpc_port} "
        f"rest={args.host}:{server.rest_port}",
        flush=True,
    )
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: server.request_stop())
    try:
        server.wait()
    finally:
        server.stop()
    return 0
