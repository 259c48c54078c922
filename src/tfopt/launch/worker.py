"""Entry point of every replica of a TrainJob, JobSet, TFJob or Vertex AI custom job.

``python -m tfopt.launch.worker --dataset D --model M --config '{...}'`` trains
with :func:`tfopt.training.train.train_model` under the strategy ``TF_CONFIG`` asks for;
the chief writes the model, the backup and (with ``--result``) a JSON summary.
In a JobSet pod (TrainJob or bare JobSet) without ``TF_CONFIG``, the config is
derived from the JobSet variables and pod DNS names (:mod:`tfopt.launch.tf_config`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from tfopt.errors import TfoptError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tfopt.launch.worker", description=__doc__)
    p.add_argument("--dataset", required=True, help="dataset artifact directory")
    p.add_argument("--model", required=True, help="where the chief writes the SavedModel")
    p.add_argument("--config", default="{}", help="TrainConfig as JSON")
    p.add_argument("--backup-dir", default="", help="BackupAndRestore directory")
    p.add_argument("--result", default="", help="chief writes the TrainResult JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        from tfopt import distribute, fsutil
        from tfopt.checks import config_from_dict
        from tfopt.launch import tf_config
        from tfopt.training import train as train_lib

        source = tf_config.ensure_tf_config(os.environ)
        if source == "jobset":
            logging.info("TF_CONFIG from the JobSet environment: %s", os.environ["TF_CONFIG"])
        cluster = distribute.parse_tf_config()  # fail fast on a malformed TF_CONFIG
        config = config_from_dict(train_lib.TrainConfig, json.loads(args.config))
        result = train_lib.train_model(
            args.dataset, args.model, config, backup_dir=args.backup_dir or None
        )
        if args.result and cluster.is_chief:
            fsutil.write_json(args.result, result.to_dict())
        logging.info(
            "done: %s replicas=%d metrics=%s",
            result.strategy,
            result.replicas,
            {k: round(v, 4) for k, v in result.metrics.items()},
        )
    except (TfoptError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
