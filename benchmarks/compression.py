"""Compression figures on builtin:digits: every TFLite mode, pruning, QAT, low-rank, distillation.

    .venv/bin/python benchmarks/compression.py [--out compression.json] [--seeds 0,1,2]

Trains the default baseline (cnn, ~151k params), derives every variant from
it and prints a Markdown table plus the checks of issue 3. Runs in about
6 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import tempfile
import time

import numpy as np

from tfopt import fsutil
from tfopt.compression import distill, lowrank, prune, qat
from tfopt.compression import tflite as tflite_lib
from tfopt.data import ingest, input_pipeline
from tfopt.evaluation.runtime import Predictor
from tfopt.training import models, train


def acc(path: str, fmt: str, x, y) -> float:
    return float(np.mean(Predictor(path, fmt).predict(x).argmax(1) == y) * 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    start = time.time()
    root = tempfile.mkdtemp(prefix="tfopt-bench-compression-")
    ds = os.path.join(root, "digits")
    info = ingest.ingest(ds, ingest.IngestConfig())
    x, y = input_pipeline.load_arrays(info, "test")
    base = os.path.join(root, "baseline")
    train.train_model(ds, base, train.TrainConfig())
    rows, checks = [], {}

    def row(name, path, fmt, params=None, sparsity=None, extra=""):
        r = {
            "name": name,
            "format": fmt,
            "accuracy": acc(path, fmt, x, y),
            "size_bytes": fsutil.size_bytes(path),
            "gzip_bytes": fsutil.gzip_bytes(path),
            "params": params,
            "sparsity": sparsity,
            "extra": extra,
        }
        rows.append(r)
        return r

    base_params = models.count_params(models.load_model(base))
    b = row("baseline", base, "saved_model", base_params, 0.0)
    tfl = {}
    for mode in tflite_lib.MODES:
        p = os.path.join(root, f"{mode}.tflite")
        tflite_lib.convert_to_tflite(
            base, ds, p, tflite_lib.TFLiteConfig(mode=mode, max_accuracy_drop=-1.0)
        )
        tfl[mode] = row(f"tflite_{mode}", p, "tflite", base_params)
    f32 = tfl["float32"]
    same = np.array_equal(
        Predictor(base, "saved_model").predict(x).argmax(1),
        Predictor(os.path.join(root, "float16.tflite"), "tflite").predict(x).argmax(1),
    )
    checks["float16 <= 55% of float size"] = tfl["float16"]["size_bytes"] / f32["size_bytes"]
    checks["float16 same argmax on every test example"] = bool(same)
    for mode in ("dynamic", "int8"):
        checks[f"{mode} <= 33% of float size"] = tfl[mode]["size_bytes"] / f32["size_bytes"]
        checks[f"{mode} drop <= 0.5 pts"] = b["accuracy"] - tfl[mode]["accuracy"]

    pruned = os.path.join(root, "pruned")
    pr = prune.prune_model(base, ds, pruned, prune.PruneConfig(target_sparsity=0.8, epochs=8))
    row(
        "pruned",
        pruned,
        "saved_model",
        pr.params,
        pr.model_sparsity,
        f"pruned layers {pr.sparsity:.4f}",
    )
    pi8 = os.path.join(root, "pruned_int8.tflite")
    tflite_lib.convert_to_tflite(
        pruned, ds, pi8, tflite_lib.TFLiteConfig(mode="int8", max_accuracy_drop=-1.0)
    )
    r = row("pruned_int8", pi8, "tflite", pr.params, pr.model_sparsity)
    checks["pruning sparsity within 0.01 of 0.8"] = pr.sparsity
    checks["pruned_int8 gzip <= 12% of float gzip"] = r["gzip_bytes"] / f32["gzip_bytes"]
    checks["pruned_int8 drop <= 1.5 pts"] = b["accuracy"] - r["accuracy"]

    qp = os.path.join(root, "qat_int8.tflite")
    qat.qat_model(base, ds, qp, qat.QatConfig(epochs=3, learning_rate=1e-4))
    r = row("qat_int8", qp, "tflite", base_params)
    checks["qat_int8 drop <= 0.3 pts"] = b["accuracy"] - r["accuracy"]
    pq = os.path.join(root, "pqat_int8.tflite")
    pqr = qat.qat_model(
        pruned, ds, pq, qat.QatConfig(preserve_sparsity=True, epochs=3, learning_rate=1e-4)
    )
    r = row(
        "pqat_int8",
        pq,
        "tflite",
        pr.params,
        pr.model_sparsity,
        f"kernel sparsity {pqr.sparsity_before:.3f} -> {pqr.sparsity_after:.3f}",
    )
    checks["pqat_int8 gzip / float gzip"] = r["gzip_bytes"] / f32["gzip_bytes"]

    lr_path = os.path.join(root, "lowrank")
    lres = lowrank.factorize_model(base, ds, lr_path, lowrank.LowRankConfig(rank=32, epochs=5))
    r = row("lowrank", lr_path, "saved_model", lres.params_after, 0.0, "; ".join(lres.notes))
    checks["lowrank >= 2x fewer params in factorized layers"] = lres.factorized_reduction
    checks["lowrank drop <= 1 pt"] = b["accuracy"] - r["accuracy"]

    seeds = [int(s) for s in args.seeds.split(",")]
    dist = {}
    for frac in (0.1, 1.0):
        runs = []
        for seed in seeds:
            res = distill.distill_model(
                base,
                ds,
                os.path.join(root, f"student-{frac}-{seed}"),
                distill.DistillConfig(
                    labelled_fraction=frac, seed=seed, epochs=20, train_scratch=True
                ),
            )
            runs.append(res)
        dist[frac] = {
            "distilled": [r.distilled_accuracy * 100 for r in runs],
            "scratch": [r.scratch_accuracy * 100 for r in runs],
            "labelled": runs[0].labelled_examples,
            "student_params": runs[0].student_params,
            "compression": runs[0].compression,
        }
    row(
        "distilled",
        os.path.join(root, f"student-1.0-{seeds[0]}"),
        "saved_model",
        dist[1.0]["student_params"],
        0.0,
        f"seed {seeds[0]}, all labels",
    )
    checks["distillation student compression >= 8x"] = dist[0.1]["compression"]
    checks["10% labels: distilled mean - scratch mean >= 3 pts"] = np.mean(
        dist[0.1]["distilled"]
    ) - np.mean(dist[0.1]["scratch"])

    print("\n| variant | format | accuracy % | size bytes | gzip bytes | params | sparsity |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        sp = "" if r["sparsity"] is None else f"{r['sparsity']:.3f}"
        print(
            f"| {r['name']} | {r['format']} | {r['accuracy']:.2f} | {r['size_bytes']} | "
            f"{r['gzip_bytes']} | {r['params'] or ''} | {sp} |"
        )
    print(
        "\n| distillation | labelled | distilled % (per seed) | scratch % (per seed) | "
        "distilled mean | scratch mean |"
    )
    print("|---|---:|---|---|---:|---:|")
    for frac, d in dist.items():
        print(
            f"| {frac:.0%} labels | {d['labelled']} | "
            f"{', '.join(f'{v:.2f}' for v in d['distilled'])} | "
            f"{', '.join(f'{v:.2f}' for v in d['scratch'])} | "
            f"{np.mean(d['distilled']):.2f} | {np.mean(d['scratch']):.2f} |"
        )
    print("\n| check | measured |")
    print("|---|---:|")
    for k, v in checks.items():
        print(f"| {k} | {v:.4f} |" if not isinstance(v, bool) else f"| {k} | {v} |")
    print(f"\nwall time {time.time() - start:.0f} s")
    if args.out:
        fsutil.write_json(args.out, {"rows": rows, "distillation": dist, "checks": checks})
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
