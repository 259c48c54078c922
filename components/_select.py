"""The body of the select component (``components/select.py``).

Imports nothing heavy before the selection itself: ``select`` runs without TensorFlow.
"""

from __future__ import annotations

from tfopt.components import _util

_FIGURES = (
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
_MODEL_METADATA = ("format", "params", "sparsity", "accuracy", "size_bytes", "base", "quantization")
_OUTPUTS = ("summary", "report_markdown", "report_html", "model_card", "selected_model")


def run(args: dict) -> bool:
    """Select among the model inputs of ``args`` (the component's ``locals()``); return
    ``blessed``."""
    from tfopt import fsutil
    from tfopt.evaluation import select as select_lib

    evaluations, metrics = args.pop("evaluations"), args.pop("metrics")
    confusion_matrix = args.pop("confusion_matrix")
    out_art = {k: args.pop(k) for k in _OUTPUTS}
    baseline, pipeline_name = args.pop("baseline"), args.pop("pipeline_name")
    policy_fields = select_lib.SelectionPolicy.__dataclass_fields__
    settings = {k: args.pop(k) for k in list(args) if k in policy_fields or k == "previous_summary"}
    settings["previous"] = settings.pop("previous_summary")
    policy = select_lib.SelectionPolicy(**settings)
    # what is left: baseline_model and the candidates
    paths = {name: a.path for name, a in _util.candidate_models(args).items()}
    out = select_lib.select_and_report(
        fsutil.read_json(evaluations.path),
        baseline,
        policy,
        pipeline_name,
        out_art["summary"].path,
        out_art["report_markdown"].path,
        out_art["report_html"].path,
        out_art["model_card"].path,
        out_art["selected_model"].path,
        paths,
    )
    rec, blessed, name = out.record, out.selection.blessed, out.selection.selected or ""
    selected_model = out_art["selected_model"]
    values = {}
    if rec is not None:
        confusion_matrix.log_confusion_matrix(
            [str(i) for i in range(len(rec["confusion_matrix"]))], rec["confusion_matrix"]
        )
        values = {k: rec.get(k) for k in _FIGURES}
        selected_model.metadata.update(
            {k: rec.get(k) for k in _MODEL_METADATA if rec.get(k) is not None}
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
    for key in ("summary", "report_html", "report_markdown", "model_card"):
        out_art[key].metadata.update({"selected": name, "blessed": blessed})
    return blessed
