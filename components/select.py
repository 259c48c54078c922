"""Select component: apply the policy, write summary / reports / model card, bless or not.

``blessed`` gates the deploy branch (``dsl.If(select.outputs["blessed"] == True)``);
``selected_model`` is a copy of the selected candidate (SavedModel directory or
``.tflite`` file, like the candidate itself), written only when one was selected.
The candidate inputs are optional and named as in ``evaluate`` (the registry
``tfopt.evaluation.candidates``, checked by ``tests/compile/test_variant_registry.py``):
pass them so the copy reads files KFP delivered to this step (needed on Kubeflow with MinIO/S3);
without them the path recorded by the evaluation step is used (local runner, /gcs).
"""

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Input, Markdown, Metrics, Model, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def select(
    evaluations: Input[Artifact],
    summary: Output[Artifact],
    report_markdown: Output[Markdown],
    report_html: Output[HTML],
    model_card: Output[Markdown],
    metrics: Output[Metrics],
    confusion_matrix: Output[ClassificationMetrics],
    selected_model: Output[Model],
    pipeline_name: str = "tfopt-optimize",
    baseline: str = "baseline",
    max_accuracy_drop: float = 1.0,
    max_size_bytes: int = 0,
    max_latency_ms_p99: float = 0.0,
    objective: str = "smallest",
    previous_summary: str = "",
    min_accuracy_change: float = 0.0,
    deploy_target: str = "none",
    min_accuracy: float = 0.0,
    min_f1: float = 0.0,
    baseline_model: Input[Model] = None,
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
) -> bool:
    """Pick one candidate under the policy; return ``blessed``, which gates deployment.

    The single return value (not a NamedTuple) is deliberate: KFP's local runner
    resolves ``dsl.If`` conditions only on outputs named ``Output``. The selected
    name is in the summary and in every output artifact's metadata.
    """
    from tfopt import fsutil
    from tfopt.components import _util
    from tfopt.evaluation import candidates as registry
    from tfopt.evaluation import select as select_lib

    args = dict(locals())
    models = {registry.BASELINE: baseline_model, **{n: args[n] for n in registry.NAMES}}
    paths = {name: a.path for name, a in _util.candidate_models(models).items()}
    policy = select_lib.SelectionPolicy(
        max_accuracy_drop=max_accuracy_drop,
        max_size_bytes=max_size_bytes,
        max_latency_ms_p99=max_latency_ms_p99,
        objective=objective,
        previous=previous_summary,
        min_accuracy_change=min_accuracy_change,
        deploy_target=deploy_target,
        min_accuracy=min_accuracy,
        min_f1=min_f1,
    )
    out = select_lib.select_and_report(
        fsutil.read_json(evaluations.path),
        baseline,
        policy,
        pipeline_name,
        summary.path,
        report_markdown.path,
        report_html.path,
        model_card.path,
        selected_model.path,
        paths,
    )
    rec, blessed, name = out.record, out.selection.blessed, out.selection.selected or ""
    values = {}
    if rec is not None:
        confusion_matrix.log_confusion_matrix(
            [str(i) for i in range(len(rec["confusion_matrix"]))], rec["confusion_matrix"]
        )
        values = {
            k: rec.get(k)
            for k in (
                "accuracy",
                "loss",
                "precision",
                "recall",
                "f1",
                "size_bytes",
                "gzip_bytes",
                "latency_ms_p50",
                "latency_ms_p95",
                "latency_ms_p99",
                "throughput_per_s",
            )
        }
        selected_model.metadata.update(
            {
                k: rec.get(k)
                for k in (
                    "format",
                    "params",
                    "sparsity",
                    "accuracy",
                    "size_bytes",
                    "base",
                    "quantization",
                )
                if rec.get(k) is not None
            }
        )
    _util.log_metrics(
        metrics,
        {
            **values,
            "blessed": int(blessed),
            "candidates": len(out.summary["variants"]),
            "acceptable": sum(not v["rejected_reasons"] for v in out.summary["variants"]),
        },
    )
    selected_model.metadata.update({"variant": name, "selected": bool(rec), "blessed": blessed})
    for artifact in (summary, report_html, report_markdown, model_card):
        artifact.metadata.update({"selected": name, "blessed": blessed})
    return blessed
