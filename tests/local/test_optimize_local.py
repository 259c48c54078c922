"""The whole optimize pipeline under KFP's local SubprocessRunner, on a small configuration."""

import json
import os

import pytest

from tfopt.cli_pipeline import run_local

SMALL = {"arch": "mlp", "width": 32, "depth": 1, "epochs": 4, "early_stopping_patience": 0,
         "latency_iterations": 20, "representative_samples": 50}


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run_local(dict(SMALL), str(out))
    with open(out / "summary.json") as fh:
        assert json.load(fh)["variants"] == result["variants"]
    return result


@pytest.mark.slow
def test_summary_has_the_documented_shape(summary):
    assert summary["pipeline"] == "tfopt-optimize"
    assert summary["dataset"]["name"] == "builtin:digits"
    ds = summary["dataset"]
    assert ds["num_train"] + ds.get("num_validation", 0) + ds["num_test"] == 1797
    assert abs(ds["num_test"] - 0.2 * 1797) <= 10  # stratified 20% test split
    assert ds["num_classes"] == 10 and isinstance(ds["num_classes"], int)
    assert summary["baseline"] == "baseline"
    names = [v["name"] for v in summary["variants"]]
    assert {"baseline", "tflite_float32", "tflite_int8"} <= set(names)
    for v in summary["variants"]:
        assert v["format"] in ("saved_model", "tflite")
        assert os.path.exists(v["path"]), v["path"]
        assert 0.0 <= v["accuracy"] <= 1.0
        assert v["size_bytes"] > v["gzip_bytes"] > 0
        assert 0 < v["latency_ms_p50"] <= v["latency_ms_p99"]


@pytest.mark.slow
def test_int8_is_a_quarter_of_float_and_as_accurate(summary):
    by_name = {v["name"]: v for v in summary["variants"]}
    f32, i8 = by_name["tflite_float32"], by_name["tflite_int8"]
    assert i8["size_bytes"] <= 0.33 * f32["size_bytes"]
    assert by_name["baseline"]["accuracy"] >= 0.85
    assert abs(i8["accuracy"] - f32["accuracy"]) <= 0.02
