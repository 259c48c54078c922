"""evaluate + select components on tiny real models: outputs, gate, reports, selected copy."""

import json
import os

import numpy as np
import pytest
from kfp import dsl

from tfopt.components.evaluate import evaluate
from tfopt.components.select import select
from tfopt.compression import tflite as tflite_lib
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError
from tfopt.training import models


def read(path, mode="r"):
    with open(path, mode) as fh:
        return fh.read()


def model_artifact(path, **meta):
    return dsl.Model(uri=str(path), metadata={"skipped": False, **meta})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, digits_dir):
    """Run the evaluate component once over baseline, two TFLite variants and a broken one."""
    root = tmp_path_factory.mktemp("evsel")
    ds = digits_dir
    info = schema.load_info(ds)
    x, y = input_pipeline.load_arrays(info, "train")
    model = models.build_model(
        models.ModelConfig(arch="mlp", width=16, depth=1, dropout=0.0),
        info.feature_shape,
        info.num_classes,
        float(x.mean()),
        float(x.var()),
    )
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    sm = models.save_model(model, str(root / "baseline"))
    tflite_lib.convert_to_tflite(
        sm, None, str(root / "f32.tflite"), tflite_lib.TFLiteConfig("float32")
    )
    tflite_lib.convert_to_tflite(
        sm, ds, str(root / "i8.tflite"), tflite_lib.TFLiteConfig("int8", representative_samples=50)
    )
    (root / "broken.tflite").write_bytes(b"\x00" * 64)
    cands = {
        "baseline": model_artifact(
            sm, variant="baseline", format="saved_model", params=models.count_params(model)
        ),
        "tflite_float32": model_artifact(
            root / "f32.tflite", variant="tflite_float32", format="tflite", base="baseline"
        ),
        "tflite_int8": model_artifact(
            root / "i8.tflite", variant="tflite_int8", format="tflite", quantization="int8"
        ),
        "tflite_float16": model_artifact(
            root / "broken.tflite", variant="tflite_float16", format="tflite"
        ),
        "pruned": dsl.Model(
            uri=str(root / "skipped"), metadata={"variant": "pruned", "skipped": True}
        ),
        "lowrank": dsl.Model(
            uri=str(root / "not_applicable"),
            metadata={
                "variant": "lowrank",
                "format": "saved_model",
                "skipped": True,
                "not_applicable": True,
                "skip_reason": "the model has no layer to factorize",
            },
        ),
    }
    evaluations = dsl.Artifact(uri=str(root / "evaluations.json"))
    metrics = dsl.Metrics(uri=str(root / "eval_metrics"))
    dataset = dsl.Dataset(uri=ds, metadata=info.to_summary())
    evaluate.python_func(
        dataset=dataset,
        evaluations=evaluations,
        metrics=metrics,
        latency_iterations=30,
        latency_warmup=5,
        latency_min_seconds=0.0,
        throughput_iterations=3,
        **cands,
    )
    return {"root": root, "evaluations": evaluations, "metrics": metrics, "cands": cands}


def test_evaluate_component_records_every_candidate(evaluated):
    payload = json.loads(read(evaluated["evaluations"].path))
    names = [r["name"] for r in payload["candidates"]]
    assert sorted(names) == [
        "baseline",
        "lowrank",
        "tflite_float16",
        "tflite_float32",
        "tflite_int8",
    ]  # disabled "pruned" stays out
    by = {r["name"]: r for r in payload["candidates"]}
    assert "cannot load the TFLite model" in by["tflite_float16"]["error"]
    assert by["baseline"]["latency_iterations"] == 30
    assert by["tflite_int8"]["uri"] == evaluated["cands"]["tflite_int8"].uri
    assert payload["config"]["throughput_iterations"] == 3
    assert payload["dataset"]["num_classes"] == 10
    logged = evaluated["metrics"].metadata
    assert logged["candidates"] == 5 and logged["failed"] == 1
    assert by["lowrank"]["error"] == (
        "not applicable to this model: the model has no layer to factorize"
    )
    assert logged["tflite_int8.accuracy"] == by["tflite_int8"]["accuracy"]
    assert evaluated["evaluations"].metadata["failed"] == ["tflite_float16"]


def run_select(evaluated, tmp_path, **params):
    tmp_path.mkdir(parents=True, exist_ok=True)
    outs = {
        "summary": dsl.Artifact(uri=str(tmp_path / "summary.json")),
        "report_markdown": dsl.Markdown(uri=str(tmp_path / "report.md")),
        "report_html": dsl.HTML(uri=str(tmp_path / "report.html")),
        "model_card": dsl.Markdown(uri=str(tmp_path / "model_card.md")),
        "metrics": dsl.Metrics(uri=str(tmp_path / "metrics")),
        "confusion_matrix": dsl.ClassificationMetrics(uri=str(tmp_path / "cm")),
        "selected_model": dsl.Model(uri=str(tmp_path / "selected_model")),
    }
    cands = evaluated["cands"]
    result = select.python_func(
        evaluations=evaluated["evaluations"],
        baseline_model=cands["baseline"],
        tflite_int8=cands["tflite_int8"],
        **outs,
        **params,
    )
    return result, outs


def test_select_blesses_and_copies_the_smallest(evaluated, tmp_path):
    result, outs = run_select(evaluated, tmp_path, max_accuracy_drop=5.0, objective="smallest")
    assert result is True and outs["summary"].metadata["selected"] == "tflite_int8"
    copied = outs["selected_model"].path
    assert read(copied, "rb") == read(evaluated["cands"]["tflite_int8"].path, "rb")
    assert outs["selected_model"].metadata["format"] == "tflite"
    assert outs["selected_model"].metadata["blessed"] is True
    summary = json.loads(read(outs["summary"].path))
    assert summary["selected"] == "tflite_int8" and summary["blessed"] is True
    assert summary["report_html"] == outs["report_html"].path
    assert os.path.exists(summary["model_card"])
    broken = next(v for v in summary["variants"] if v["name"] == "tflite_float16")
    assert broken["rejected_reasons"][0].startswith("failed to evaluate: ModelError")
    unfit = next(v for v in summary["variants"] if v["name"] == "lowrank")
    assert unfit["rejected_reasons"] == [
        "not applicable to this model: the model has no layer to factorize"
    ]
    cm = outs["confusion_matrix"].metadata["confusionMatrix"]
    rows = np.array([r["row"] for r in cm["rows"]])
    assert rows.shape == (10, 10) and rows.sum() == summary["dataset"]["num_test"]
    assert outs["metrics"].metadata["blessed"] == 1.0
    assert outs["metrics"].metadata["accuracy"] == pytest.approx(
        next(v["accuracy"] for v in summary["variants"] if v["name"] == "tflite_int8")
    )
    assert "data:image/png;base64" in read(outs["report_html"].path)
    assert "# Model card: `tflite_int8`" in read(outs["model_card"].path)


def test_select_most_accurate_copies_a_saved_model_dir(evaluated, tmp_path):
    _result, outs = run_select(
        evaluated,
        tmp_path / "any_target",
        max_accuracy_drop=50.0,
        objective="most_accurate",
        max_size_bytes=10_000_000,
    )
    summary = json.loads(read(outs["summary"].path))
    ok = [v for v in summary["variants"] if not v["rejected_reasons"]]
    selected = outs["summary"].metadata["selected"]
    assert next(v for v in ok if v["name"] == selected)["accuracy"] == max(
        v["accuracy"] for v in ok
    )
    # TF Serving takes SavedModels only: the baseline is the one candidate it can take, so
    # the pick (and the directory copy) does not hang on accuracy ties between formats
    result, outs = run_select(
        evaluated,
        tmp_path / "tf_serving",
        max_accuracy_drop=50.0,
        objective="most_accurate",
        max_size_bytes=10_000_000,
        deploy_target="tf_serving",
    )
    summary = json.loads(read(outs["summary"].path))
    ok = [v["name"] for v in summary["variants"] if not v["rejected_reasons"]]
    assert ok == ["baseline"]
    assert result is True and outs["summary"].metadata["selected"] == "baseline"
    by = {v["name"]: v for v in summary["variants"]}
    assert by["tflite_int8"]["rejected_reasons"] == [
        "format tflite cannot be deployed to tf_serving (takes saved_model)"
    ]
    assert outs["selected_model"].metadata["format"] == "saved_model"
    src, dst = evaluated["cands"]["baseline"].path, outs["selected_model"].path

    def tree(root):
        return {
            os.path.relpath(os.path.join(d, f), root): read(os.path.join(d, f), "rb")
            for d, _, files in os.walk(root)
            for f in files
        }

    original, copied = tree(src), tree(dst)
    assert "saved_model.pb" in original and any(p.startswith("variables/") for p in original)
    assert sorted(copied) == sorted(original)  # every file of the SavedModel directory
    assert copied == original  # byte for byte


def test_select_not_blessed_when_targets_unmet(evaluated, tmp_path):
    result, outs = run_select(evaluated, tmp_path, max_size_bytes=100, objective="fastest")
    assert result is False and outs["summary"].metadata["selected"] == ""
    assert not os.path.exists(outs["selected_model"].path)
    assert outs["selected_model"].metadata["blessed"] is False
    assert "confusionMatrix" not in outs["confusion_matrix"].metadata
    assert "not blessed" in read(outs["report_markdown"].path)
    assert "no model selected" in read(outs["model_card"].path)


def test_select_unknown_objective_fails_clearly(evaluated, tmp_path):
    with pytest.raises(ConfigError, match="objective='cheapest'"):
        run_select(evaluated, tmp_path, objective="cheapest")
