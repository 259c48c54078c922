"""Evaluate component: every candidate model on the test split, in one process.

Each candidate of the registry (``tfopt.evaluation.candidates``) is an optional input
named as its entry; a skipped or absent one is left out. The signature is written out
because KFP reads it; ``tests/compile/test_variant_registry.py`` checks it against the
registry.
One step (rather than one per candidate) pays TensorFlow's start-up once.
A candidate that cannot be loaded or run is recorded with its error.
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def evaluate(
    dataset: Input[Dataset],
    baseline: Input[Model],
    evaluations: Output[Artifact],
    metrics: Output[Metrics],
    tflite_float32: Input[Model] = None,
    tflite_dynamic: Input[Model] = None,
    tflite_float16: Input[Model] = None,
    tflite_int8: Input[Model] = None,
    pruned: Input[Model] = None,
    pruned_int8: Input[Model] = None,
    distilled: Input[Model] = None,
    distilled_int8: Input[Model] = None,
    lowrank: Input[Model] = None,
    lowrank_int8: Input[Model] = None,
    qat_int8: Input[Model] = None,
    pqat_int8: Input[Model] = None,
    litert_int8: Input[Model] = None,
    litert_int16x8: Input[Model] = None,
    litert_dynamic: Input[Model] = None,
    litert_int4_weight_only: Input[Model] = None,
    litert_mixed: Input[Model] = None,
    latency_iterations: int = 200,
    latency_warmup: int = 20,
    latency_min_seconds: float = 0.2,
    num_threads: int = 1,
    throughput_batch_size: int = 64,
    throughput_iterations: int = 20,
):
    """Measure quality, size, latency, throughput and memory of every candidate."""
    from tfopt import fsutil
    from tfopt.components import _util
    from tfopt.data import schema
    from tfopt.evaluation import candidates as registry
    from tfopt.evaluation import evaluate as evaluate_lib

    args = dict(locals())
    inputs = {name: args[name] for name in (registry.BASELINE, *registry.NAMES)}
    candidates = _util.candidates_from_inputs(inputs)
    uris = {v.path: v.uri for v in inputs.values() if hasattr(v, "uri") and hasattr(v, "path")}
    for cand in candidates:
        cand.metadata.setdefault("uri", uris.get(cand.path))
    config = evaluate_lib.EvalConfig(
        latency_iterations=latency_iterations,
        latency_warmup=latency_warmup,
        latency_min_seconds=latency_min_seconds,
        num_threads=num_threads,
        throughput_batch_size=throughput_batch_size,
        throughput_iterations=throughput_iterations,
    )
    records = evaluate_lib.evaluate_candidates(candidates, dataset.path, config)
    records += _util.not_applicable_records(inputs)
    fsutil.write_json(
        evaluations.path,
        {
            "dataset": schema.load_info(dataset.path).to_summary(),
            "candidates": records,
            "config": evaluate_lib.config_dict(config),
        },
    )
    failed = [r["name"] for r in records if r.get("error") and not r.get("not_applicable")]
    evaluations.metadata.update({"candidates": [r["name"] for r in records], "failed": failed})
    per_candidate = {
        f"{r['name']}.{k}": r.get(k)
        for r in records
        for k in (
            "accuracy",
            "f1",
            "size_bytes",
            "gzip_bytes",
            "latency_ms_p50",
            "latency_ms_p95",
            "latency_ms_p99",
            "throughput_per_s",
            "peak_rss_bytes",
        )
    }
    _util.log_metrics(metrics, {"candidates": len(records), "failed": len(failed), **per_candidate})
