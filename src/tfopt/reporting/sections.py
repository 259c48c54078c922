"""What both evaluation reports show, read from the run summary: the candidates' rows, the
policy, the edge (TFLite) candidates, how it was measured, class labels.
"""

from __future__ import annotations

import platform

from tfopt import registry


def evaluated(summary: dict) -> list[dict]:
    """The variants that were evaluated (no error, an accuracy)."""
    return [v for v in summary["variants"] if not v.get("error") and v.get("accuracy") is not None]


def class_label(dataset: dict, i: int) -> str:
    """Class ``i`` as people read it: ``3 (Dress)`` when the dataset names its classes."""
    names = dataset.get("class_names") or []
    return f"{i} ({names[i]})" if i < len(names) else str(i)


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def champion_status(champion: dict) -> str:
    """The champion's status cell: which deployed model it is."""
    where = {
        "tf_serving": f"TF Serving v{champion.get('version')}",
        "vertex": f"Vertex {champion.get('version')}",
    }.get(str(champion.get("source")), "champion_uri")
    return f"champion ({where})"


def served(summary: dict, variant: dict) -> bool:
    """Whether the run's deploy target can serve the variant's format (any, with none)."""
    target = (summary.get("policy") or {}).get("deploy_target") or ""
    formats = registry.DEPLOY_TARGET_FORMATS.get(target, ())
    return not formats or variant.get("format") in formats


def other_target(summary: dict, variant: dict) -> bool:
    """A variant only its format rules out (the gate gives that one reason): it is for
    another target, not rejected (the console's status ``other target`` too)."""
    return not served(summary, variant) and len(variant.get("rejected_reasons") or []) <= 1


def failure(variant: dict) -> str:
    """Why a record with an ``error`` has no figures: not made (``skip_non_contenders``:
    it could not be picked), or its evaluation failed."""
    err = variant["error"]
    return err if variant.get("not_made") else f"failed to evaluate: {err}"


def candidate_rows(summary: dict) -> list[dict]:
    """One row per candidate, then the champion's (when it was evaluated)."""
    base = next((v for v in summary["variants"] if v["name"] == summary["baseline"]), None)
    base_acc = base.get("accuracy") if base and not base.get("error") else None
    rows = []
    champion = summary.get("champion") or {}
    shown = summary["variants"] + ([champion] if champion.get("evaluated") else [])
    for v in shown:
        err = v.get("error")
        reasons = v.get("rejected_reasons") or ([failure(v)] if err else [])
        status = (
            "not made"
            if v.get("not_made")
            else "**selected**"
            if v["name"] == summary.get("selected")
            else "other target"
            if not err and v is not champion and other_target(summary, v)
            else "rejected"
            if reasons
            else champion_status(v)
            if v is champion
            else "acceptable"
        )
        acc = v.get("accuracy")
        drop = (base_acc - acc) * 100 if acc is not None and base_acc is not None else None
        rows.append(
            {
                "variant": v["name"],
                "format": v.get("format") or "-",
                "accuracy %": _fmt(acc * 100 if acc is not None else None, ".2f"),
                "drop (pts)": _fmt(drop, "+.2f"),
                "macro F1": _fmt(v.get("f1"), ".3f"),
                "precision": _fmt(v.get("precision"), ".3f"),
                "recall": _fmt(v.get("recall"), ".3f"),
                "params": _fmt(v.get("params"), ","),
                "sparsity": _fmt(v.get("sparsity"), ".1%"),
                "size KB": _fmt(v["size_bytes"] / 1024 if v.get("size_bytes") else None, ",.1f"),
                "gzip KB": _fmt(v["gzip_bytes"] / 1024 if v.get("gzip_bytes") else None, ",.1f"),
                "p50 ms": _fmt(v.get("latency_ms_p50"), ".4g"),
                "p95 ms": _fmt(v.get("latency_ms_p95"), ".4g"),
                "p99 ms": _fmt(v.get("latency_ms_p99"), ".4g"),
                "ex/s": _fmt(v.get("throughput_per_s"), ",.0f"),
                "peak MiB": _fmt(
                    v["peak_rss_bytes"] / 2**20 if v.get("peak_rss_bytes") else None, ",.0f"
                ),
                "status": status,
                "reasons": "; ".join(reasons),
            }
        )
    return rows


def policy_lines(summary: dict) -> list[str]:
    p = summary.get("policy") or {}
    if not p:
        return []
    drop = f"max accuracy drop {p.get('max_accuracy_drop')} points vs `{summary['baseline']}`"
    noise = summary.get("accuracy_noise") or {}
    if noise:
        drop += (
            f" on the same {noise['num_test']} test examples (a drop chance explains, "
            f"McNemar p >= {noise['alpha']:g}, is none)"
        )
    lines = [
        f"objective `{p.get('objective')}`",
        drop,
        f"max size {p['max_size_bytes']:,} bytes" if p.get("max_size_bytes") else "no size limit",
        f"max p99 latency {p['max_latency_ms_p99']} ms"
        if p.get("max_latency_ms_p99")
        else "no latency limit",
    ]
    if noise.get("warning"):
        lines.append("warning: " + noise["warning"])
    floor = summary.get("quality_floor") or {}
    if floor.get("required_accuracy") is not None:
        lines.append(
            f"quality floor: accuracy >= {floor['required_accuracy'] * 100:.2f}% (the "
            f"majority-class predictor scores {floor['majority_accuracy'] * 100:.2f}% on "
            f"{floor['num_test']} test examples)"
        )
    if floor.get("min_accuracy"):
        lines.append(f"min accuracy {floor['min_accuracy'] * 100:g}%")
    if floor.get("min_f1"):
        lines.append(f"min macro F1 {floor['min_f1']:g}")
    lines += champion_policy_lines(summary)
    prev = summary.get("previous")
    if prev:
        lines.append(
            f"accuracy change >= {p.get('min_accuracy_change'):+g} points vs the "
            f"previously blessed model `{prev.get('name')}` "
            f"({prev['accuracy'] * 100:.2f}%)"
        )
    elif p.get("previous"):
        lines.append("previous run given but it blessed no model: no comparison")
    return lines


def champion_policy_lines(summary: dict) -> list[str]:
    """The change threshold against the champion, or why there is no champion."""
    champion = summary.get("champion")
    if champion is None:
        return []
    p = summary.get("policy") or {}
    unit = "points" if p.get("change_mode", "absolute") == "absolute" else "% (relative)"
    if champion.get("evaluated"):
        return [
            f"accuracy change >= {p.get('min_accuracy_change', 0):+g} {unit} vs the "
            f"{champion_status(champion)}, {champion['accuracy'] * 100:.2f}% on this test split"
        ]
    return [f"no champion: {champion.get('reason') or 'none found'}; value thresholds alone"]


def edge_candidates(summary: dict) -> set[str]:
    """TFLite variants of a run whose deploy target serves SavedModels only."""
    target = (summary.get("policy") or {}).get("deploy_target")
    if target not in ("tf_serving", "vertex"):
        return set()
    return {
        v["name"]
        for v in summary["variants"]
        if v.get("format") == "tflite" and not v.get("error") and not v.get("not_applicable")
    }


def measurement_note(summary: dict) -> str:
    v = next((v for v in evaluated(summary)), None)
    if v is None:
        return "No candidate could be evaluated."
    threads = sorted(
        {str(x.get("num_threads")) for x in evaluated(summary) if x.get("format") == "tflite"}
    )
    return (
        f"Batch-1 latency over {v.get('latency_iterations')} timed calls after "
        f"{v.get('latency_warmup')} warm-up calls; throughput at batch "
        f"{v.get('throughput_batch_size')} over {v.get('throughput_iterations')} calls. "
        f"TFLite runtime {_tflite_runtime(summary)}"
        f" with {', '.join(threads) or '-'} thread(s) (0 = runtime default); SavedModels "
        "through their concrete serving_default function. Peak memory: resident "
        f"high-water mark of the evaluation process per candidate "
        f"({v.get('memory_method') or '-'}). Machine: {platform.machine()} "
        f"{platform.processor() or ''}, Python {platform.python_version()}."
    )


MD_COLUMNS = (
    "variant",
    "format",
    "accuracy %",
    "drop (pts)",
    "macro F1",
    "params",
    "sparsity",
    "size KB",
    "gzip KB",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "ex/s",
    "peak MiB",
    "status",
)


def _tflite_runtime(summary: dict) -> str | None:
    return next((x.get("runtime") for x in evaluated(summary) if x.get("format") == "tflite"), "-")


def searched(summary: dict) -> list[dict]:
    """The variants a search made (``search: true``), each as its search record (``knob``,
    ``chosen``, ``trials``) with the variant's ``name``, in the summary's order."""
    return [{"name": v["name"], **v["search"]} for v in summary["variants"] if v.get("search")]


def search_rows(search: dict) -> list[dict]:
    """One row per trial of ``search`` (see ``searched``), in the order they ran; the
    split the search judged on is in the accuracy column's name."""
    knob, rows = search["knob"], []
    for i, t in enumerate(search["trials"], 1):
        split = next((k for k in t if k.endswith("_accuracy")), "accuracy")
        rows.append(
            {
                "trial": str(i),
                knob: f"{t[knob]:g}",
                f"{split.replace('_', ' ')} %": _fmt(t.get(split), ".2%").rstrip("%"),
                "drop (pts)": _fmt(t.get("drop_points"), "+.2f"),
                "within budget": "yes" if t.get("fits") else "no",
                "size KB": _fmt(t.get("size_bytes", 0) / 1e3, ".1f"),
                "seconds": _fmt(t.get("seconds"), ".1f"),
                "chosen": "*" if t[knob] == search.get("chosen") else "",
            }
        )
    return rows


INT8_REFERENCE = "tflite_int8"  # the baseline's int8 conversion (tfopt.compression.tflite)


def _family(summary: dict, v: dict) -> str | None:
    """The reference ``v``'s latency is read against: the baseline for a SavedModel, the
    baseline's int8 conversion for an int8 TFLite model (None: no reference of its kind)."""
    if v.get("format") == "saved_model":
        return summary["baseline"]
    return INT8_REFERENCE if v.get("quantization") == "int8" else None


def flops_points(summary: dict) -> list[dict]:
    """The evaluated candidates with FLOPs, each against its reference (``_family``): its
    ``removed`` FLOPs (fraction) and p50 ``ratio``; each reference first, at (0, 1). None
    unless a candidate besides the references has FLOPs (a channel-pruned one)."""
    by_name = {v["name"]: v for v in evaluated(summary) if v.get("flops")}
    points = []
    for ref in (summary["baseline"], INT8_REFERENCE):
        base = by_name.get(ref)
        if base is None or _family(summary, base) != ref:
            continue
        mine = [v for v in by_name.values() if _family(summary, v) == ref]
        points += [
            {
                "name": v["name"],
                "reference": ref,
                "format": v["format"],
                "flops": v["flops"],
                "removed": 1 - v["flops"] / base["flops"],
                "p50": v["latency_ms_p50"],
                "ratio": v["latency_ms_p50"] / base["latency_ms_p50"],
            }
            for v in sorted(mine, key=lambda v: (v["name"] != ref, -v["flops"]))
        ]
    return points if any(p["name"] != p["reference"] for p in points) else []


def _count(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:g}"


def flops_rows(points: list[dict]) -> list[dict]:
    """The table under the FLOPs plot: one row per point of ``flops_points``."""
    return [
        {
            "variant": p["name"],
            "against": p["reference"],
            "FLOPs": _count(p["flops"]),
            "FLOPs removed": f"{p['removed']:.1%}",
            "p50 ms": f"{p['p50']:.4g}",
            "p50 x baseline": f"{p['ratio']:.2f}",
        }
        for p in points
    ]
