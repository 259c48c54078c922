"""tfopt.reporting.report / tfopt.reporting.modelcard / select_and_report: content people read,
files written.
"""

import base64
import json
import re

import pytest

from tfopt.evaluation import flops
from tfopt.evaluation import select as sel
from tfopt.reporting import modelcard, report, sections

# 90% on 100 test examples (55 majority), consistent with the 0.90 records below:
# the quality floor reads the class counts from it
CM = [[50, 5], [5, 40]]


def rec(name, accuracy, size, p50, fmt="tflite", **extra):
    return {
        "name": name,
        "format": fmt,
        "path": f"/m/{name}",
        "accuracy": accuracy,
        "loss": 0.3,
        "precision": accuracy,
        "recall": accuracy,
        "f1": accuracy - 0.01,
        "per_class": {
            "precision": [0.7, 0.8],
            "recall": [0.8, 0.7],
            "f1": [0.75, 0.747],
            "support": [6, 6],
        },
        "confusion_matrix": CM,
        "num_test": 12,
        "size_bytes": size,
        "gzip_bytes": size // 2,
        "latency_ms_p50": p50,
        "latency_ms_p95": p50 * 1.2,
        "latency_ms_p99": p50 * 1.5,
        "throughput_per_s": 5000.0,
        "throughput_batch_size": 64,
        "throughput_iterations": 20,
        "latency_iterations": 200,
        "latency_warmup": 20,
        "runtime": "tf.lite",
        "num_threads": 1,
        "params": 1210,
        "sparsity": 0.25,
        "peak_rss_bytes": 600 * 2**20,
        "memory_bytes": 2**20,
        "memory_method": "VmHWM",
        **extra,
    }


def records():
    return [
        rec("baseline", 0.90, 90_000, 0.4, fmt="saved_model"),
        rec("tflite_float32", 0.90, 30_000, 0.05),
        rec("tflite_int8", 0.895, 9_000, 0.04, quantization="int8", base="baseline"),
        rec("worse", 0.70, 20_000, 0.06),
        {
            "name": "broken",
            "format": "tflite",
            "path": "/m/broken",
            "error": "ModelError: cannot load the TFLite model",
        },
    ]


DATASET = {
    "name": "builtin:digits",
    "num_train": 1260,
    "num_validation": 179,
    "num_test": 12,
    "num_classes": 2,
}


def summary_for(policy=None):
    s = sel.select_candidate(records(), "baseline", policy or sel.SelectionPolicy())
    return sel.summarize("tfopt-optimize", DATASET, "baseline", s), s


def test_pareto_front():
    pts = [(1.0, 90.0), (2.0, 95.0), (3.0, 94.0), (0.5, 80.0), (2.0, 93.0), (0.5, 80.0)]
    # (3, 94) is beaten by (2, 95); (2, 93) too; equal points do not dominate each other
    assert report.pareto_front(pts) == [3, 5, 0, 1]
    assert report.pareto_front([]) == []


def test_markdown_report_lists_every_candidate_and_reason():
    summary, _ = summary_for()
    md = report.markdown_report(summary)
    assert "**Selected: `tflite_int8` - blessed for deployment.**" in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 5 + 1 + 2  # header, 5 candidates, per-class header + 2 classes
    assert "- `worse`: accuracy drop 20.00 points > 1" in md
    assert "- `broken`: failed to evaluate: ModelError: cannot load the TFLite model" in md
    assert "200 timed calls after 20 warm-up calls" in md
    assert "| tflite_int8 | tflite | 89.50 | +0.50 |" in md


def test_rows_the_target_cannot_serve_are_for_another_target_not_rejected():
    """As the console says: a TFLite row of a TF Serving run is 'other target' when its
    format is its only reason, 'rejected' when something else rules it out too."""
    summary, _ = summary_for(sel.SelectionPolicy(deploy_target="tf_serving"))
    rows = {r["variant"]: r for r in sections.candidate_rows(summary)}
    assert rows["tflite_int8"]["status"] == "other target"
    assert rows["worse"]["status"] == "rejected"  # a TFLite row 20 points down as well
    assert rows["baseline"]["status"] in ("acceptable", "**selected**")


def test_html_report_is_self_contained_with_three_plots():
    summary, _ = summary_for()
    page = report.html_report(summary, CM)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3
    for img in images:
        assert base64.b64decode(img)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "<tr class='selected'>" in page and "tflite_int8" in page
    assert "failed to evaluate: ModelError" in page
    unblessed, _ = summary_for(sel.SelectionPolicy(max_size_bytes=10))
    page = report.html_report(unblessed, None)
    assert "not blessed" in page and len(re.findall("data:image/png", page)) == 2


def test_model_card_for_selected_and_for_none():
    summary, s = summary_for()
    card = modelcard.model_card(summary, next(r for r in s.records if r["name"] == s.selected))
    for section in (
        "## Model details",
        "## Intended use",
        "## Data",
        "## Metrics (test split)",
        "## Limitations and caveats",
    ):
        assert section in card
    assert "| accuracy | 89.50% |" in card
    assert "derived from `baseline`, quantization `int8`" in card
    assert "Size: 8.8 KiB (9,000 bytes)" in card and "Parameters: 1,210" in card
    assert "0.04 / 0.048 / 0.06 ms" in card
    none, _ = summary_for(sel.SelectionPolicy(max_size_bytes=10))
    card = modelcard.model_card(none, None)
    assert "no model selected" in card and "- `worse`: accuracy drop 20.00 points > 1" in card


@pytest.mark.parametrize("layout", ["file", "dir"])
def test_select_and_report_writes_everything_and_copies_the_model(tmp_path, layout):
    src = tmp_path / "cands" / "tflite_int8"
    if layout == "file":
        src.parent.mkdir()
        src.write_bytes(b"TFL3 model bytes")
    else:
        (src / "variables").mkdir(parents=True)
        (src / "saved_model.pb").write_bytes(b"pb")
        (src / "variables" / "variables.index").write_bytes(b"idx")
    out = tmp_path / "out"
    evaluations = {
        "dataset": {**DATASET, "shards": "ignored"},
        "candidates": records(),
        "config": {"latency_iterations": 200},
    }
    result = sel.select_and_report(
        evaluations,
        "baseline",
        sel.SelectionPolicy(),
        "tfopt-optimize",
        str(out / "s.json"),
        str(out / "r.md"),
        str(out / "r.html"),
        str(out / "card.md"),
        str(out / "model"),
        {"tflite_int8": str(src)},
    )
    summary = json.loads((out / "s.json").read_text())
    assert summary["selected"] == "tflite_int8" and summary["blessed"] is True
    assert summary["report_html"] == str(out / "r.html")
    assert summary["model_card"] == str(out / "card.md")
    assert "shards" not in summary["dataset"] and summary["evaluation"]["latency_iterations"] == 200
    assert "confusion_matrix" not in summary["variants"][0]
    assert result.record["confusion_matrix"] == CM
    if layout == "file":
        assert (out / "model").read_bytes() == b"TFL3 model bytes"
    else:
        assert (out / "model" / "variables" / "variables.index").read_bytes() == b"idx"
    assert (out / "card.md").read_text().startswith("# Model card: `tflite_int8`")
    assert "data:image/png" in (out / "r.html").read_text()


def test_select_and_report_without_a_pick_copies_nothing(tmp_path):
    out = tmp_path / "out"
    result = sel.select_and_report(
        {"dataset": DATASET, "candidates": records()},
        "baseline",
        sel.SelectionPolicy(max_latency_ms_p99=0.001),
        "p",
        str(out / "s.json"),
        str(out / "r.md"),
        str(out / "r.html"),
        str(out / "card.md"),
        str(out / "model"),
    )
    assert result.selection.blessed is False and result.record is None
    assert not (out / "model").exists()
    assert json.loads((out / "s.json").read_text())["selected"] is None


def test_class_names_reach_the_report_and_the_model_card(tmp_path):
    out = tmp_path / "out"
    evaluations = {"dataset": {**DATASET, "class_names": ["cat", "dog"]}, "candidates": records()}
    (tmp_path / "int8.tflite").write_bytes(b"TFL3")
    paths = [str(out / n) for n in ("s.json", "r.md", "r.html", "card.md", "model")]
    sources = {"tflite_int8": str(tmp_path / "int8.tflite")}
    sel.select_and_report(evaluations, "baseline", sel.SelectionPolicy(), "p", *paths, sources)
    summary = json.loads((out / "s.json").read_text())
    assert summary["dataset"]["class_names"] == ["cat", "dog"]  # kept by select
    md = (out / "r.md").read_text()
    assert "Classes, in label-id order: cat, dog." in md
    assert "| 0 (cat) | 0.700 | 0.800 | 0.750 | 6 |" in md
    page = (out / "r.html").read_text()
    assert "2 classes: cat, dog.</p>" in page and "<tr><td>1 (dog)</td>" in page
    card = (out / "card.md").read_text()  # the selected tflite_int8
    assert "2 classes (in label-id order: cat, dog)" in card
    assert "Per-class F1: 0 (cat): 0.750, 1 (dog): 0.747" in card
    assert "Weakest classes by F1: 1 (dog): 0.747, 0 (cat): 0.750." in card
    assert "not inside the `.tflite` file" in card
    baseline = next(v for v in records() if v["name"] == "baseline")
    assert "`assets/labels.txt` in the SavedModel" in modelcard.model_card(summary, baseline)
    unnamed, _ = summary_for()
    assert "Label vocabulary" not in modelcard.model_card(unnamed, baseline)


SEARCH = {  # as compression/search.py records it: strong end first, then bisection
    "knob": "target_sparsity",
    "chosen": 0.7,
    "max_accuracy_drop": 1.0,
    "trials": [
        {
            "target_sparsity": v,
            "validation_accuracy": a,
            "drop_points": d,
            "fits": d <= 1,
            "size_bytes": s,
            "gzip_bytes": s // 3,
            "seconds": 4.0,
        }
        for v, a, d, s in (
            (0.9, 0.84, 6.0, 40_000),
            (0.7, 0.895, 0.5, 60_000),
            (0.8, 0.88, 2.0, 50_000),
        )
    ],
}


def test_a_searched_variant_gets_its_trials_table_and_plot():
    s = sel.select_candidate(
        records()[:2] + [rec("pruned", 0.89, 20_000, 0.04, search=SEARCH)] + records()[2:],
        "baseline",
        sel.SelectionPolicy(),
    )
    summary = json.loads(json.dumps(sel.summarize("tfopt-optimize", DATASET, "baseline", s)))
    (search,) = sections.searched(summary)
    assert search["name"] == "pruned" and search["knob"] == "target_sparsity"
    md = report.markdown_report(summary)
    assert "## Search: `pruned` over `target_sparsity`" in md
    rows = [ln for ln in md.split("## Search")[1].splitlines() if ln.startswith("| ")]
    assert rows[0].split(" | ")[:3] == ["| trial", "target_sparsity", "validation accuracy %"]
    assert rows[1:] == [  # header, then one row per trial in the order they ran
        "| 1 | 0.9 | 84.00 | +6.00 | no | 40.0 | 4.0 |  |",
        "| 2 | 0.7 | 89.50 | +0.50 | yes | 60.0 | 4.0 | * |",
        "| 3 | 0.8 | 88.00 | +2.00 | no | 50.0 | 4.0 |  |",
    ]
    page = report.html_report(summary, CM)
    assert len(re.findall("data:image/png", page)) == 4  # size, latency, confusion, search
    assert "<h2>Search: pruned over target_sparsity</h2>" in page
    assert page.count("<tr class='selected'><td class=n>2</td>") == 1  # the chosen trial
    assert "## Search" not in report.markdown_report(summary_for()[0])  # none searched


def test_a_cut_search_says_why_without_a_trials_table_or_plot():
    cut = {"knob": "target_sparsity", "chosen": 0.8, "max_accuracy_drop": 1.0, "trials": [],
           "cut": "objective fastest: zeros are computed like any other weight"}  # fmt: skip
    s = sel.select_candidate(
        records()[:2] + [rec("pruned", 0.89, 20_000, 0.04, search=cut)] + records()[2:],
        "baseline",
        sel.SelectionPolicy(),
    )
    summary = json.loads(json.dumps(sel.summarize("tfopt-optimize", DATASET, "baseline", s)))
    md = report.markdown_report(summary)
    assert (
        "Cut before any trial, made at target_sparsity = 0.8: objective fastest: zeros are "
        "computed like any other weight." in md
    )
    assert "| trial |" not in md
    page = report.html_report(summary, CM)
    assert "<h2>Search: pruned over target_sparsity</h2>\n<p class='note'>Cut before" in page
    assert len(re.findall("data:image/png", page)) == 3  # size, latency, confusion


def pruned_records(pruned_error=False):
    """As evaluate leaves them: the FLOPs channel pruning wrote into its model's metadata,
    the rest of the lineage filled in by tfopt.evaluation.flops."""
    pruned = (
        {"name": "channel_pruned", "format": "saved_model", "path": "/m/cp", "error": "boom"}
        if pruned_error
        else rec("channel_pruned", 0.895, 60_000, 0.3, fmt="saved_model")
    )
    pruned.update(base="baseline", flops=1_200_000, flops_removed=0.4)
    out = [
        rec("baseline", 0.90, 90_000, 0.4, fmt="saved_model"),
        pruned,
        rec("tflite_float32", 0.90, 30_000, 0.05, base="baseline"),
        rec("tflite_int8", 0.895, 9_000, 0.04, quantization="int8", base="baseline"),
        rec("channel_pruned_int8", 0.89, 6_000, 0.026, quantization="int8", base="channel_pruned"),
        rec("worse", 0.70, 20_000, 0.06),
    ]
    flops.carry("baseline", out)
    return out


def test_flops_reach_the_lineage_from_the_pruned_variants_metadata():
    by_name = {r["name"]: r for r in pruned_records()}
    assert by_name["channel_pruned"]["flops_before"] == 2_000_000
    assert by_name["baseline"]["flops"] == 2_000_000
    assert by_name["baseline"]["flops_source"] == "flops_before of channel_pruned"
    assert by_name["channel_pruned_int8"]["flops"] == 1_200_000  # conversion keeps them
    assert by_name["channel_pruned_int8"]["flops_source"] == "base channel_pruned"
    assert by_name["tflite_int8"]["flops"] == by_name["tflite_float32"]["flops"] == 2_000_000
    assert "flops" not in by_name["worse"]  # no step reported any: off the plot


def test_flops_against_latency_section_per_runtime():
    s = sel.select_candidate(pruned_records(), "baseline", sel.SelectionPolicy())
    summary = json.loads(json.dumps(sel.summarize("tfopt-optimize", DATASET, "baseline", s)))
    points = sections.flops_points(summary)
    # float32 TFLite has FLOPs but no reference of its runtime: left out, as is `worse`
    assert [(p["name"], p["reference"]) for p in points] == [
        ("baseline", "baseline"),
        ("channel_pruned", "baseline"),
        ("tflite_int8", "tflite_int8"),
        ("channel_pruned_int8", "tflite_int8"),
    ]
    assert points[1]["removed"] == pytest.approx(0.4) and points[1]["ratio"] == pytest.approx(0.75)
    assert points[3]["removed"] == pytest.approx(0.4) and points[3]["ratio"] == pytest.approx(0.65)
    md = report.markdown_report(summary)
    assert "## FLOPs removed and latency" in md
    table = [ln for ln in md.split("## FLOPs")[1].splitlines() if ln.startswith("| ")]
    assert table == [
        "| variant | against | FLOPs | FLOPs removed | p50 ms | p50 x baseline |",
        "| baseline | baseline | 2M | 0.0% | 0.4 | 1.00 |",
        "| channel_pruned | baseline | 1.2M | 40.0% | 0.3 | 0.75 |",
        "| tflite_int8 | tflite_int8 | 2M | 0.0% | 0.04 | 1.00 |",
        "| channel_pruned_int8 | tflite_int8 | 1.2M | 40.0% | 0.026 | 0.65 |",
    ]
    page = report.html_report(summary, CM)
    images = re.findall(r'alt="([^"]+)" src="data:image/png', page)
    assert images == ["accuracy vs size", "accuracy vs latency", "confusion matrix",
                      "latency vs FLOPs"]  # fmt: skip
    assert "<h2>FLOPs removed and latency</h2>" in page
    assert "<td>channel_pruned</td><td>baseline</td><td class=n>1.2M</td>" in page


def test_no_flops_section_without_a_candidate_besides_the_baseline_with_flops():
    for summary in (
        summary_for()[0],  # nobody reported FLOPs
        # the pruned variant failed (and made no int8 child): its metadata still gives
        # the baseline its FLOPs, but nothing is left to set against it
        sel.summarize(
            "tfopt-optimize",
            DATASET,
            "baseline",
            sel.select_candidate(
                [r for r in pruned_records(True) if r["name"] != "channel_pruned_int8"],
                "baseline",
                sel.SelectionPolicy(),
            ),
        ),
    ):
        assert sections.flops_points(summary) == []
        assert "FLOPs" not in report.markdown_report(summary)
        page = report.html_report(summary, CM)
        assert "FLOPs" not in page and len(re.findall("data:image/png", page)) == 3
