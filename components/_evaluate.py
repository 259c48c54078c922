"""The body of the evaluate component (``components/evaluate.py``)."""

from __future__ import annotations

from tfopt.components import _util

# per-candidate figures logged on the step's Metrics
_FIGURES = (
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


def run(args: dict) -> None:
    """Evaluate every model input among ``args`` (the component's ``locals()``)."""
    from tfopt import fsutil
    from tfopt.data import schema
    from tfopt.evaluation import champion as champion_lib
    from tfopt.evaluation import evaluate as evaluate_lib

    dataset, evaluations, metrics = (
        args.pop("dataset"),
        args.pop("evaluations"),
        args.pop("metrics"),
    )
    config = evaluate_lib.EvalConfig(
        **{k: args.pop(k) for k in list(args) if k in evaluate_lib.EvalConfig.__dataclass_fields__}
    )
    validation = args.pop("validation", None)
    dv = fsutil.read_json(validation.path) if validation is not None else None
    candidates = _util.candidates_from_inputs(args)  # what is left: baseline and candidates
    uris = {v.path: v.uri for v in args.values() if hasattr(v, "uri") and hasattr(v, "path")}
    for cand in candidates:
        cand.metadata.setdefault("uri", uris.get(cand.path))
    champion = champion_lib.champion_candidate(dv)  # the deployed model, one more to evaluate
    records = evaluate_lib.evaluate_candidates(
        candidates + ([champion] if champion else []), dataset.path, config
    )
    champion_record = records.pop() if champion else None
    records += _util.not_applicable_records(args)
    fsutil.write_json(
        evaluations.path,
        {
            "dataset": schema.load_info(dataset.path).to_summary(),
            "candidates": records,
            "config": evaluate_lib.config_dict(config),
            **({"champion": champion_lib.champion_entry(dv, champion_record)} if dv else {}),
            **({"data_validation": dv} if dv else {}),
        },
    )
    failed = [
        r["name"]
        for r in records
        if r.get("error") and not (r.get("not_applicable") or r.get("not_made"))
    ]
    evaluations.metadata.update({"candidates": [r["name"] for r in records], "failed": failed})
    shown = records + ([champion_record] if champion_record else [])
    per_candidate = {f"{r['name']}.{k}": r.get(k) for r in shown for k in _FIGURES}
    _util.log_metrics(metrics, {"candidates": len(records), "failed": len(failed), **per_candidate})
