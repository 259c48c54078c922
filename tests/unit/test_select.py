"""tfopt.evaluation.select: targets, objectives, reasons, the previous-model gate, the summary
contract.
"""

import json
from dataclasses import asdict

import pytest

from tfopt.errors import ConfigError
from tfopt.evaluation import noise
from tfopt.evaluation import select as sel
from tfopt.reporting.summary import SUMMARY_FIELDS, format_table


def rec(name, accuracy, size, p50, p99=None, **extra):
    return {
        "name": name,
        "format": "tflite" if name != "baseline" else "saved_model",
        "path": f"/m/{name}",
        "accuracy": accuracy,
        "size_bytes": size,
        "gzip_bytes": size // 2,
        "latency_ms_p50": p50,
        "latency_ms_p99": p99 or p50 * 2,
        "latency_ms_p95": p50 * 1.5,
        "precision": accuracy,
        "recall": accuracy,
        "f1": accuracy,
        "throughput_per_s": 1000 / p50,
        "params": 100,
        "sparsity": 0.0,
        **extra,
    }


RECORDS = [
    rec("baseline", 0.950, 100_000, 0.50),
    rec("tflite_float32", 0.950, 40_000, 0.10),
    rec("tflite_int8", 0.945, 12_000, 0.08),
    rec("pruned", 0.960, 60_000, 0.30),
    rec("tiny", 0.900, 5_000, 0.01),
]


@pytest.mark.parametrize(
    ("objective", "expected"),
    [("smallest", "tflite_int8"), ("fastest", "tflite_int8"), ("most_accurate", "pruned")],
)
def test_each_objective_picks_its_candidate(objective, expected):
    s = sel.select_candidate(RECORDS, "baseline", sel.SelectionPolicy(objective=objective))
    assert s.selected == expected and s.blessed
    assert s.reasons["tiny"] == ["accuracy drop 5.00 points > 1"]
    assert expected in s.reason and objective.replace("_", " ") in s.reason


def test_size_and_latency_targets_give_reasons():
    policy = sel.SelectionPolicy(
        max_accuracy_drop=10,
        max_size_bytes=50_000,
        max_latency_ms_p99=0.19,
        objective="most_accurate",
    )
    s = sel.select_candidate(RECORDS, "baseline", policy)
    assert s.selected == "tflite_int8"  # pruned is too big and too slow, float32 too slow
    assert s.reasons["pruned"] == ["size 60000 bytes > 50000", "p99 latency 0.600 ms > 0.19 ms"]
    assert s.reasons["tflite_float32"] == ["p99 latency 0.200 ms > 0.19 ms"]
    assert s.reasons["tiny"] == []
    by_name = {r["name"]: r for r in s.records}
    assert by_name["pruned"]["rejected_reasons"] == s.reasons["pruned"]


def _paired(n, only_baseline, only_candidate):
    drop = noise.PairedDrop(
        n,
        only_baseline,
        only_candidate,
        (only_baseline - only_candidate) / n * 100,
        noise.mcnemar_p(only_baseline, only_candidate),
    )
    return {**asdict(drop), "text": drop.describe()}


def test_a_drop_chance_explains_passes_the_gate_and_a_real_one_does_not():
    """Issue 32: on 200 examples, 4 against 0 disagreements (2 points) could be a fair
    coin's (McNemar p 0.125): no drop; 10 against 0 (5 points) could not."""
    base = rec("baseline", 0.95, 100_000, 0.5, num_test=200)
    noisy = rec("noisy", 0.93, 5_000, 0.1, paired_drop=_paired(200, 4, 0))
    real = rec("real", 0.90, 4_000, 0.1, paired_drop=_paired(200, 10, 0))
    measured = rec("measured", 0.93, 4_500, 0.1)  # no paired figures: taken as measured
    s = sel.select_candidate([base, noisy, real, measured], "baseline", sel.SelectionPolicy())
    assert s.reasons["noisy"] == [] and s.selected == "noisy"
    assert s.reasons["real"] == ["accuracy drop 5.00 points > 1"]
    assert s.reasons["measured"] == ["accuracy drop 2.00 points > 1"]
    # 200 examples cannot tell a 1-point drop from noise: the run says how many could
    assert s.noise["examples_needed"] == 600 and "needs 600" in s.noise["warning"]
    summary = sel.summarize("p", {}, "baseline", s)
    assert summary["accuracy_noise"] == s.noise
    assert f"(!) {s.noise['warning']}" in format_table(summary)  # the console says it too
    enough = sel.select_candidate(
        [rec("baseline", 0.95, 1, 0.5, num_test=600)], "baseline", sel.SelectionPolicy()
    )
    assert "warning" not in enough.noise


def test_nothing_acceptable_is_not_blessed():
    s = sel.select_candidate(RECORDS, "baseline", sel.SelectionPolicy(max_size_bytes=1000))
    assert s.selected is None and s.blessed is False
    assert all(s.reasons.values()) and s.reason == "no candidate meets the policy"


def test_failed_candidate_is_rejected_with_its_error():
    records = RECORDS + [
        {"name": "broken", "format": "tflite", "path": "/x", "error": "ModelError: cannot load"}
    ]
    s = sel.select_candidate(records, "baseline", sel.SelectionPolicy())
    assert s.reasons["broken"] == ["failed to evaluate: ModelError: cannot load"]
    assert s.selected == "tflite_int8"


def test_failed_baseline_rejects_everything_without_crashing():
    records = [
        {"name": "baseline", "format": "saved_model", "path": "/b", "error": "boom"},
        *RECORDS[1:],
    ]
    s = sel.select_candidate(records, "baseline", sel.SelectionPolicy())
    assert not s.blessed
    assert "baseline failed" in s.reasons["tflite_int8"][0]


def test_bad_input_fails_clearly():
    with pytest.raises(ConfigError, match="no candidate"):
        sel.select_candidate([], "baseline", sel.SelectionPolicy())
    with pytest.raises(ConfigError, match="'teacher' is not among the candidates: baseline"):
        sel.select_candidate(RECORDS, "teacher", sel.SelectionPolicy())
    with pytest.raises(ConfigError, match=r"objective='tiniest'.*'smallest'"):
        sel.SelectionPolicy(objective="tiniest")
    with pytest.raises(ConfigError, match="max_accuracy_drop"):
        sel.SelectionPolicy(max_accuracy_drop=-1)


def _previous(tmp_path, accuracy, selected="prev_int8", blessed=True):
    path = tmp_path / "prev" / "summary.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {
                "pipeline": "p",
                "baseline": "baseline",
                "selected": selected,
                "blessed": blessed,
                "variants": [{"name": "prev_int8", "accuracy": accuracy}],
            }
        )
    )
    return path


def test_previous_blessed_model_gates_like_a_change_threshold(tmp_path):
    prev = _previous(tmp_path, 0.948)
    s = sel.select_candidate(
        RECORDS, "baseline", sel.SelectionPolicy(previous=str(prev.parent))
    )  # dir works too
    assert "vs the previously blessed model (94.80%)" in s.reasons["tflite_int8"][0]
    assert s.selected == "tflite_float32" and s.previous["accuracy"] == 0.948
    loose = sel.select_candidate(
        RECORDS, "baseline", sel.SelectionPolicy(previous=str(prev), min_accuracy_change=-0.5)
    )
    assert loose.selected == "tflite_int8"
    strict = sel.select_candidate(
        RECORDS, "baseline", sel.SelectionPolicy(previous=str(prev), min_accuracy_change=1.0)
    )
    assert strict.selected == "pruned"  # the only one 1 point better


def test_previous_without_blessed_model_is_ignored_and_missing_file_fails(tmp_path):
    prev = _previous(tmp_path, 0.99, selected=None, blessed=False)
    s = sel.select_candidate(RECORDS, "baseline", sel.SelectionPolicy(previous=str(prev)))
    assert s.selected == "tflite_int8" and s.previous is None
    with pytest.raises(ConfigError, match="no such file"):
        sel.select_candidate(
            RECORDS, "baseline", sel.SelectionPolicy(previous=str(tmp_path / "missing.json"))
        )


def test_summary_contract_and_table():
    s = sel.select_candidate(
        RECORDS
        + [{"name": "broken", "format": "tflite", "path": "/x", "error": "ModelError: bad"}],
        "baseline",
        sel.SelectionPolicy(),
    )
    dataset = {"name": "builtin:digits", "num_train": 1, "num_test": 2, "num_classes": 10}
    summary = sel.summarize(
        "tfopt-optimize", dataset, "baseline", s, report_html="/r.html", model_card="/card.md"
    )
    for key in (
        "pipeline",
        "dataset",
        "baseline",
        "variants",
        "selected",
        "blessed",
        "report_html",
        "model_card",
    ):
        assert key in summary
    assert summary["selected"] == "tflite_int8" and summary["blessed"] is True
    for variant in summary["variants"]:
        assert set(SUMMARY_FIELDS) <= set(variant)
        assert isinstance(variant["rejected_reasons"], list)
    assert summary["variants"][1]["rejected_reasons"] == []
    json.dumps(summary)  # serializable as is
    table = format_table(summary)
    lines = table.splitlines()
    marked = [line for line in lines if line.startswith("*")]
    assert len(marked) == 1 and "tflite_int8" in marked[0] and "SELECTED" in marked[0]
    assert any("tiny" in line and "accuracy drop 5.00 points" in line for line in lines)
    assert any("broken" in line and "failed to evaluate: ModelError: bad" in line for line in lines)
