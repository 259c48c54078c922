"""Scale: ingest, train and evaluate at 1x, 10x and 100x the built-in digits size.

Each phase runs in a fresh subprocess, so its wall time and peak RSS
(``os.wait4`` rusage of that child alone) are not mixed with the others.
Data is ``builtin:synthetic`` (8x8x1, 10 classes) of 1797 x scale examples;
training is a fixed number of epochs (no early stopping); evaluation
streams the test split in batches. Also measures CSV -> TFRecord ingest.

    .venv/bin/python benchmarks/scale.py                 # 1x, 10x, 100x
    .venv/bin/python benchmarks/scale.py --scales 1,10 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

DIGITS = 1797


def _phase(args) -> dict:
    """Runs inside the child process; returns the phase's figures.

    ``wall_s`` times the phase's work after TensorFlow is imported; the parent
    adds ``process_s`` (the whole child, start-up included).
    """
    import tfopt._keras  # noqa: F401  (TensorFlow start-up is not the phase's work)
    from tfopt.data import ingest as ingest_lib
    from tfopt.data import input_pipeline, schema

    n = DIGITS * args.scale
    ds_dir = os.path.join(args.workdir, f"data-{args.scale}x")
    start = time.perf_counter()
    if args.phase == "ingest":
        info = ingest_lib.ingest(
            ds_dir,
            ingest_lib.IngestConfig(
                source="builtin:synthetic", synthetic_examples=n, shard_size=20_000
            ),
        )
        return {
            "examples": n,
            "wall_s": time.perf_counter() - start,
            "shards": sum(len(s) for s in info.shards.values()),
        }
    if args.phase == "csv_ingest":
        info = ingest_lib.ingest(
            ds_dir + "-csv",
            ingest_lib.IngestConfig(source=args.csv, feature_shape=(8, 8, 1), shard_size=20_000),
        )
        return {"examples": sum(info.counts.values()), "wall_s": time.perf_counter() - start}
    if args.phase == "train":
        from tfopt.training import models, train

        config = train.TrainConfig(
            model=models.ModelConfig(arch="mlp", width=64, depth=2),
            epochs=args.epochs,
            early_stopping_patience=0,
            batch_size=64,
        )
        result = train.train_model(
            ds_dir, os.path.join(args.workdir, f"model-{args.scale}x"), config
        )
        examples = schema.load_info(ds_dir).counts["train"] * args.epochs
        return {
            "examples": examples,
            "wall_s": time.perf_counter() - start,
            "steady_examples_per_s": result.metrics["examples_per_second"],
            "val_accuracy": result.metrics.get("val_accuracy"),
        }
    if args.phase == "evaluate":
        from tfopt.evaluation.runtime import Predictor

        info = schema.load_info(ds_dir)
        predictor = Predictor(os.path.join(args.workdir, f"model-{args.scale}x"), "saved_model")
        correct = count = 0
        for x, y in input_pipeline.iter_arrays(info, "test", batch_size=1024):
            correct += int((predictor.predict(x, 1024).argmax(1) == y).sum())
            count += len(y)
        return {
            "examples": count,
            "wall_s": time.perf_counter() - start,
            "accuracy": correct / count,
        }
    raise SystemExit(f"unknown phase {args.phase}")


def run_phase(phase: str, scale: int, workdir: str, epochs: int, csv: str = "") -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--phase",
        phase,
        "--scale",
        str(scale),
        "--workdir",
        workdir,
        "--epochs",
        str(epochs),
        "--csv",
        csv,
    ]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out_path = os.path.join(workdir, f"{phase}-{scale}.json")
    start = time.perf_counter()
    with open(out_path + ".log", "w") as log:
        proc = subprocess.Popen([*cmd, "--result", out_path], stdout=log, stderr=log, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    process_s = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"phase {phase} {scale}x failed; see {out_path}.log")
    with open(out_path) as fh:
        result = json.load(fh)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    result["process_s"] = process_s
    result["examples_per_s"] = result["examples"] / result["wall_s"]
    return result


def write_csv(path: str, n: int) -> None:
    import numpy as np

    from tfopt.data import readers

    with open(path, "w") as fh:
        fh.write("label," + ",".join(f"p{i}" for i in range(64)) + "\n")
        for chunk in readers.read_synthetic(n, (8, 8, 1), 10, 42):
            rows = np.concatenate([chunk.y[:, None], chunk.x.reshape(len(chunk.y), -1)], 1)
            np.savetxt(fh, rows, fmt=["%d"] + ["%.4f"] * 64, delimiter=",")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scales", default="1,10,100")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--csv-scale", type=int, default=100)
    ap.add_argument("--workdir", default="")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--phase", default="")
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--csv", default="")
    ap.add_argument("--result", default="")
    args = ap.parse_args()
    if args.child:
        with open(args.result, "w") as fh:
            json.dump(_phase(args), fh)
        return
    workdir = args.workdir or tempfile.mkdtemp(prefix="tfopt-scale-")
    results: dict = {"epochs": args.epochs, "phases": {}}
    print(
        f"{'phase':<11}{'scale':>6}{'examples':>10}{'work s':>9}{'ex/s':>10}"
        f"{'process s':>11}{'peak RSS MB':>13}  notes"
    )
    for scale in [int(s) for s in args.scales.split(",")]:
        for phase in ("ingest", "train", "evaluate"):
            r = run_phase(phase, scale, workdir, args.epochs)
            results["phases"][f"{phase}-{scale}x"] = r
            notes = ""
            if phase == "train":
                notes = (
                    f"steady {r['steady_examples_per_s']:.0f} ex/s "
                    f"({1e6 / r['steady_examples_per_s']:.1f} us/ex), "
                    f"val_acc {r['val_accuracy']:.3f}"
                )
            elif phase == "evaluate":
                notes = f"accuracy {r['accuracy']:.3f}"
            print(
                f"{phase:<11}{scale:>5}x{r['examples']:>10}{r['wall_s']:>9.2f}"
                f"{r['examples_per_s']:>10.0f}{r['process_s']:>11.1f}"
                f"{r['peak_rss_mb']:>13.0f}  {notes}",
                flush=True,
            )
    if args.csv_scale:
        csv = os.path.join(workdir, f"synthetic-{args.csv_scale}x.csv")
        write_csv(csv, DIGITS * args.csv_scale)
        r = run_phase("csv_ingest", args.csv_scale, workdir, args.epochs, csv)
        r["csv_bytes"] = os.path.getsize(csv)
        results["phases"][f"csv_ingest-{args.csv_scale}x"] = r
        print(
            f"{'csv_ingest':<11}{args.csv_scale:>5}x{r['examples']:>10}{r['wall_s']:>9.2f}"
            f"{r['examples_per_s']:>10.0f}{r['process_s']:>11.1f}{r['peak_rss_mb']:>13.0f}  "
            f"{r['csv_bytes'] / 1e6:.0f} MB CSV",
            flush=True,
        )
    ph = results["phases"]
    scales = [int(s) for s in args.scales.split(",")]
    if {10, 100} <= set(scales):
        cost = {s: 1 / ph[f"train-{s}x"]["steady_examples_per_s"] for s in (10, 100)}
        ratio = cost[100] / cost[10]
        print(f"per-example training cost 100x / 10x: {ratio:.3f} (goal within 0.8-1.2)")
        results["train_cost_ratio_100_10"] = ratio
    if {1, 100} <= set(scales):
        for phase in ("ingest", "train"):
            ratio = ph[f"{phase}-100x"]["peak_rss_mb"] / ph[f"{phase}-1x"]["peak_rss_mb"]
            print(f"peak RSS {phase} 100x / 1x: {ratio:.2f} (goal <= 1.5)")
            results[f"rss_ratio_{phase}_100_1"] = ratio
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
