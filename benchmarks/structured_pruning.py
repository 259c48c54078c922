"""Structured pruning on real families (issue 31): FLOPs out against latency gained.

    .venv/bin/python benchmarks/structured_pruning.py [--families mobilenet_v2:0.35,...]
        [--max-examples 14000] [--epochs 20] [--fractions 0.3,0.5,0.7] [--prune-epochs 4]
        [--teacher-weights 0,0.5] [--out results.json]
    .venv/bin/python benchmarks/structured_pruning.py --remeasure results.json [--rounds 3]

Per family (``arch:alpha``; tf_keras.applications with ``weights=None`` as the families
benchmark builds them; ``resnet_small``: ResNet-20, ``benchmarks/models/resnet_small.py``,
as a user's module file) on a seeded stratified subset of builtin:fashion_mnist: trains the
baseline through the library (early stopping on the validation split), then for each
FLOPs fraction and teacher weight runs ``channel_prune_model`` (and, as ``control``, the
baseline fine-tuned alike with nothing removed) (fine-tuned ``--prune-epochs``)
and measures,
side by side in one run: test accuracy, parameters, FLOPs, the SavedModel's batch-1 p50
through tfopt's own runtime (``Predictor``) at 1 and 2 TensorFlow threads (each in a
process of its own: TensorFlow's thread pools are per process), and the int8 TFLite
child's p50 against the baseline's int8. Prints a Markdown table; ``--out`` keeps JSON.
Training tolerates a busy machine, latency does not: ``--remeasure`` takes the latencies of
a kept run again (the models stay in its temporary directory), in turns, on a quiet one.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from tfopt.compression import channel_prune as cp
from tfopt.compression import tflite as tflite_lib
from tfopt.compression.common import finetune, load_for_compression
from tfopt.data import ingest, input_pipeline
from tfopt.evaluation.evaluate import EvalConfig, latency_ms
from tfopt.evaluation.runtime import Predictor
from tfopt.training import models, train

# p50 of a SavedModel in a fresh process with the given TensorFlow threads
_P50 = """
import json, sys
import numpy as np
from tfopt.evaluation.evaluate import EvalConfig, latency_ms
from tfopt.evaluation.runtime import Predictor
x = np.load(sys.argv[2])
config = EvalConfig(latency_iterations=300, latency_min_seconds=1.0)
print(json.dumps(float(np.median(latency_ms(Predictor(sys.argv[1], "saved_model"), x, config)))))
"""


def saved_model_p50(path: str, threads: int, x_file: str, onednn: bool = True) -> float:
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads),
           "TF_NUM_INTEROP_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "3",
           "TF_ENABLE_ONEDNN_OPTS": str(int(onednn))}  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-c", _P50, path, x_file], env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def tflite_p50(path: str, x) -> float:
    config = EvalConfig(latency_iterations=300, num_threads=1)
    return float(np.median(latency_ms(Predictor(path, "tflite", num_threads=1), x, config)))


def accuracy(path: str, fmt: str, x, y) -> float:
    return float(np.mean(Predictor(path, fmt).predict(x).argmax(1) == y) * 100)


def latencies(path: str, x, x_file: str) -> dict:
    """The p50 columns (``--remeasure`` takes them again, on a quiet machine)."""
    return {
        "path": path,
        "p50_ms_1_thread": saved_model_p50(path, 1, x_file),
        "p50_ms_2_threads": saved_model_p50(path, 2, x_file),
        "p50_ms_1_thread_no_onednn": saved_model_p50(path, 1, x_file, onednn=False),
        "int8_p50_ms": tflite_p50(path + "-int8.tflite", x),
    }


def measure(path: str, ds: str, x, y, x_file: str) -> dict:
    i8 = path + "-int8.tflite"
    tflite_lib.convert_to_tflite(
        path, ds, i8, tflite_lib.TFLiteConfig(mode="int8", max_accuracy_drop=-1.0)
    )
    return {
        "accuracy": accuracy(path, "saved_model", x, y),
        "params": models.count_params(models.load_model(path)),
        "int8_accuracy": accuracy(i8, "tflite", x, y),
        **latencies(path, x, x_file),
    }


RESNET_MODULE = os.path.join(os.path.dirname(__file__), "models", "resnet_small.py")


def train_config(spec: str, epochs: int) -> train.TrainConfig:
    """``arch:alpha`` (a built-in family) or ``resnet_small`` (a user's module file)."""
    if spec == "resnet_small":
        return train.TrainConfig(module_file=RESNET_MODULE, epochs=epochs)
    arch, _, alpha = spec.partition(":")
    model = models.ModelConfig(arch=arch, alpha=float(alpha or 1.0))
    return train.TrainConfig(model=model, epochs=epochs)


def control(base: str, ds: str, args) -> str:
    """The baseline given the pruned models' fine-tuning (the same epochs, cosine decay),
    no channel taken out: what that extra training alone is worth, the fair reference of a
    drop when the baseline's own recipe stopped early."""
    out = base + "-control"
    model, info = load_for_compression(base, ds, "control")
    defaults = cp.ChannelPruneConfig()
    finetune(model, info, args.prune_epochs, defaults.batch_size, defaults.learning_rate,
             defaults.seed, cosine=True)  # fmt: skip
    models.save_for_dataset(model, out, info)
    return out


def family(spec: str, ds: str, root: str, args, x, y, x_file: str) -> dict:
    start = time.perf_counter()
    base = os.path.join(root, spec.replace(":", "-"))
    trained = train.train_model(ds, base, train_config(spec, args.epochs))
    r: dict = {"family": spec, "epochs_run": trained.epochs_run,
               "train_seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
    r["baseline"] = measure(base, ds, x, y, x_file)
    r["pruned"] = {"control": {**measure(control(base, ds, args), ds, x, y, x_file),
                               "flops_removed": 0.0}}  # fmt: skip
    for fraction, weight in itertools.product(
        (float(f) for f in args.fractions.split(",")),
        (float(w) for w in args.teacher_weights.split(",")),
    ):
        out = f"{base}-cp{fraction}-t{weight}"
        t0 = time.perf_counter()
        config = cp.ChannelPruneConfig(
            flops_fraction=fraction, epochs=args.prune_epochs, teacher_weight=weight
        )
        res = cp.channel_prune_model(base, ds, out, config)
        r["pruned"][f"{fraction} t{weight}"] = {
            **measure(out, ds, x, y, x_file),
            "flops_removed": res.flops_removed,
            "flops_before": res.flops_before,
            "flops_after": res.flops_after,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="mobilenet_v2:0.35,mobilenet_v2:1.0,resnet_small")
    parser.add_argument("--max-examples", type=int, default=14000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--fractions", default="0.3,0.5,0.7")
    parser.add_argument("--prune-epochs", type=int, default=4)
    parser.add_argument(
        "--teacher-weights", default="0.5", help="channel_prune teacher_weight values, side by side"
    )
    parser.add_argument("--out", default="")
    parser.add_argument(
        "--remeasure", default="", help="a results.json: take its latencies again and print"
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --remeasure")
    args = parser.parse_args()
    if args.remeasure:
        with open(args.remeasure) as fh:
            rows = json.load(fh)
        remeasure(rows, args.rounds)
        with open(args.out or args.remeasure, "w") as fh:
            json.dump(rows, fh, indent=1)
        print(f"load {os.getloadavg()}\n{table(rows)}")
        return
    root = tempfile.mkdtemp(prefix="tfopt-bench-structured-")
    ds = os.path.join(root, "fashion")
    info = ingest.ingest(
        ds, ingest.IngestConfig(source="builtin:fashion_mnist", max_examples=args.max_examples)
    )
    x, y = input_pipeline.load_arrays(info, "test")
    x_file = os.path.join(root, "x.npy")
    np.save(x_file, x[:64])
    print(f"Fashion-MNIST subset {info.counts}, load {os.getloadavg()}", flush=True)
    rows = []
    for spec in args.families.split(","):
        rows.append(family(spec, ds, root, args, x, y, x_file))
        print(json.dumps(rows[-1]), flush=True)
        if args.out:
            with open(args.out, "w") as fh:
                json.dump(rows, fh, indent=1)
    print(table(rows))


def remeasure(rows: list[dict], rounds: int) -> None:
    """Take every model's latencies again, ``rounds`` times in turn (A B C A B C: a burst
    of load falls on all of them alike), keeping each column's median."""
    entries = [e for r in rows for e in (r["baseline"], *r["pruned"].values())]
    root = os.path.dirname(entries[0]["path"])
    x = np.load(os.path.join(root, "x.npy"))
    taken = [[latencies(e["path"], x, os.path.join(root, "x.npy")) for e in entries]
             for _ in range(rounds)]  # fmt: skip
    for i, e in enumerate(entries):
        for key in taken[0][i]:
            if key != "path":
                e[key] = float(np.median([t[i][key] for t in taken]))


def table(rows: list[dict]) -> str:
    def p50s(p: dict, b: dict | None) -> str:
        cols = ("p50_ms_1_thread", "p50_ms_2_threads", "p50_ms_1_thread_no_onednn")
        ms = " / ".join(f"{p[c]:.3f}" for c in cols)
        if b is None:
            return f"{ms} | {p['int8_p50_ms']:.3f}"
        ratios = " / ".join(f"{p[c] / b[c]:.2f}x" for c in cols)
        return (
            f"{ms} ({ratios}) | {p['int8_p50_ms']:.3f} ({p['int8_p50_ms'] / b['int8_p50_ms']:.2f}x)"
        )

    lines = [
        "| family | FLOPs out (target, teacher weight) | accuracy % (drop) | params | SavedModel "
        "p50 ms 1 / 2 threads / 1 thread without oneDNN (x baseline) | int8 p50 ms (x baseline "
        "int8) |",
        "|---|---|---|---:|---|---|",
    ]
    for r in rows:
        b = r["baseline"]
        lines.append(
            f"| {r['family']} | 0 | {b['accuracy']:.2f} | {b['params']:,} | {p50s(b, None)} |"
        )
        for key, p in r["pruned"].items():
            lines.append(
                f"| | {p['flops_removed']:.0%} ({key}) | {p['accuracy']:.2f} "
                f"({b['accuracy'] - p['accuracy']:+.2f}) | {p['params']:,} | {p50s(p, b)} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
