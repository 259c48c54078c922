"""Evaluate component: every candidate model on the test split, in one process.

Each candidate is an optional input; a skipped or absent one is left out.
One step (rather than one per candidate) pays TensorFlow's start-up once.
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
    latency_iterations: int = 200,
    latency_warmup: int = 20,
    num_threads: int = 1,
):
    """Measure accuracy, size and latency of every candidate; write evaluations.json."""
    from tfopt import evaluate as evaluate_lib
    from tfopt import fsutil
    from tfopt.components import _util

    inputs = dict(locals())
    candidates = _util.candidates_from_inputs(inputs)
    config = evaluate_lib.EvalConfig(latency_iterations=latency_iterations,
                                     latency_warmup=latency_warmup, num_threads=num_threads)
    records = evaluate_lib.evaluate_candidates(candidates, dataset.path, config)
    fsutil.write_json(evaluations.path, {"dataset": dataset.metadata, "candidates": records})
    for record in records:
        _util.log_metrics(metrics, {f"{record['name']}.{k}": v for k, v in record.items()
                                    if k in ("accuracy", "size_bytes", "latency_ms_p50")})
