"""What ``tfopt run`` says about the candidates: the target's formats once, best per target."""

from tfopt.client.results import OTHER_TARGET, best_for, target_note, target_reasons
from tfopt.evaluation import select as sel
from tfopt.reporting.summary import format_table


def rec(name, fmt, accuracy, size):
    return {
        "name": name,
        "format": fmt,
        "path": f"/m/{name}",
        "accuracy": accuracy,
        "size_bytes": size,
        "gzip_bytes": size // 2,
        "latency_ms_p50": 0.1,
        "latency_ms_p99": 0.2,
        "f1": accuracy,
        "throughput_per_s": 1000.0,
    }


RECORDS = [
    rec("baseline", "saved_model", 0.950, 100_000),
    rec("distilled", "saved_model", 0.945, 20_000),
    rec("tflite_int8", "tflite", 0.948, 12_000),
    rec("distilled_int8", "tflite", 0.944, 6_000),
    rec("tiny_int8", "tflite", 0.800, 1_000),  # too inaccurate for any target
]


def summary_for(target: str, **policy) -> dict:
    selection = sel.select_candidate(
        RECORDS, "baseline", sel.SelectionPolicy(deploy_target=target, **policy)
    )
    return sel.summarize("tfopt-optimize", {"name": "d"}, "baseline", selection)


def test_tf_serving_says_once_that_tflite_rows_are_for_other_targets():
    summary = summary_for("tf_serving")
    assert summary["selected"] == "distilled"
    ruled_out = target_reasons(summary)
    assert set(ruled_out) == {"tflite_int8", "distilled_int8", "tiny_int8"}
    note = target_note(summary)
    assert note[0].startswith("deploy target tf_serving takes saved_model only: the 3 tflite rows")
    assert note[1] == (
        "best per target: TF Serving: distilled (selected); "
        "TFLite (edge devices): distilled_int8 (5.9 KB, 94.40%)"
    )
    table = format_table(summary, said_above=ruled_out)
    assert "cannot be deployed" not in table
    rows = {
        line.split()[1] if line[0] == "*" else line.split()[0]: line for line in table.split("\n")
    }
    assert rows["tflite_int8"].endswith(OTHER_TARGET)
    assert rows["distilled_int8"].endswith(OTHER_TARGET)
    # a row with a reason of its own still reads as rejected, without the format reason
    assert rows["tiny_int8"].endswith("rejected: accuracy drop 15.00 points > 1")
    # without the note, the table is as before
    assert table.count("cannot be deployed") == 0
    assert format_table(summary).count("cannot be deployed to tf_serving") == 3


def test_tflite_target_names_the_best_saved_model_and_respects_the_policy():
    summary = summary_for("tflite", max_size_bytes=50_000)
    assert summary["selected"] == "distilled_int8"
    assert best_for(summary, "tf_serving") == "distilled"  # baseline is over the size limit
    assert target_note(summary)[1].startswith("best per target: TFLite (edge devices): ")
    assert "TF Serving: distilled (19.5 KB, 94.50%)" in target_note(summary)[1]


def test_no_note_when_the_target_takes_every_format():
    summary = summary_for("none")
    assert target_reasons(summary) == {} and target_note(summary) == []
