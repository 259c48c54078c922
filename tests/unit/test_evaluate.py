"""tfopt.evaluate on tiny real models: metrics, weights, latency, memory, bad candidates."""

import time

import numpy as np
import pytest

from tfopt.compression import tflite as tflite_lib
from tfopt.data import input_pipeline, schema
from tfopt.errors import ConfigError, ModelError
from tfopt.evaluation import evaluate as ev
from tfopt.evaluation.noise import mcnemar_p
from tfopt.evaluation.runtime import Predictor
from tfopt.training import models


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, digits_dir):
    """digits + a tiny trained mlp (SavedModel) + float32 / int8 TFLite + a sparse copy."""
    root = tmp_path_factory.mktemp("eval_zoo")
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
    sm = models.save_model(model, str(root / "sm"))
    t32, t8 = str(root / "f32.tflite"), str(root / "i8.tflite")
    tflite_lib.convert_to_tflite(sm, None, t32, tflite_lib.TFLiteConfig(mode="float32"))
    tflite_lib.convert_to_tflite(
        sm,
        ds,
        t8,
        tflite_lib.TFLiteConfig(mode="int8", representative_samples=50, max_accuracy_drop=-1.0),
    )
    sparse = models.clone_model(model)
    kernel = sparse.get_layer("dense1").kernel
    kernel.assign(np.zeros(kernel.shape, np.float32))
    sparse_path = models.save_model(sparse, str(root / "sparse"))
    xt, yt = input_pipeline.load_arrays(info, "test")
    expected = float(np.mean(model.predict(xt, verbose=0).argmax(1) == yt))
    return {
        "root": root,
        "ds": ds,
        "sm": sm,
        "t32": t32,
        "t8": t8,
        "sparse": sparse_path,
        "params": models.count_params(model),
        "accuracy": expected,
        "num_test": len(yt),
    }


FAST = ev.EvalConfig(
    latency_warmup=5, latency_iterations=30, latency_min_seconds=0.0, throughput_iterations=3
)


def test_saved_model_record_has_every_metric(zoo):
    rec = ev.evaluate_model(zoo["sm"], "saved_model", zoo["ds"], FAST, "baseline")
    assert rec["accuracy"] == pytest.approx(zoo["accuracy"], abs=1e-9)
    assert rec["num_test"] == zoo["num_test"]
    cm = np.array(rec["confusion_matrix"])
    assert cm.shape == (10, 10) and cm.sum() == zoo["num_test"]
    assert np.trace(cm) / cm.sum() == pytest.approx(rec["accuracy"])
    assert len(rec["per_class"]["f1"]) == 10
    assert rec["per_class"]["support"] == cm.sum(axis=1).tolist()
    assert 0 < rec["f1"] <= 1 and 0 < rec["precision"] <= 1 and 0 < rec["recall"] <= 1
    assert rec["loss"] > 0
    assert rec["params"] == zoo["params"] and rec["sparsity"] == 0.0
    assert rec["latency_ms_p50"] <= rec["latency_ms_p95"] <= rec["latency_ms_p99"]
    assert rec["latency_iterations"] == 30 and rec["latency_warmup"] == 5
    assert rec["throughput_per_s"] > 0 and rec["throughput_batch_size"] == 64
    assert rec["size_bytes"] > rec["gzip_bytes"] > 0
    assert rec["runtime"] == "tf.saved_model"
    assert rec["peak_rss_bytes"] > 50 * 2**20 and rec["memory_bytes"] >= 0
    assert rec["memory_method"] in ("VmHWM", "psutil-sampling")


def test_tflite_float32_matches_saved_model_and_records_threads(zoo):
    recs = ev.evaluate_candidates(
        [
            ev.Candidate("baseline", zoo["sm"], "saved_model", {}),
            ev.Candidate("tflite_float32", zoo["t32"], "tflite", {"base": "baseline"}),
            ev.Candidate("tflite_int8", zoo["t8"], "tflite", {"quantization": "int8"}),
        ],
        zoo["ds"],
        ev.EvalConfig(
            latency_warmup=2,
            latency_iterations=20,
            num_threads=2,
            latency_min_seconds=0.05,
            throughput_iterations=2,
        ),
    )
    base, f32, i8 = recs
    assert abs(f32["accuracy"] - base["accuracy"]) <= 1 / zoo["num_test"] + 1e-9
    assert f32["num_threads"] == 2 and f32["runtime"] in ("tf.lite", "ai_edge_litert")
    assert f32["base"] == "baseline" and i8["quantization"] == "int8"
    assert f32["params"] == zoo["params"]  # weights read from the flatbuffer
    # at least latency_iterations; how many more fit in latency_min_seconds depends on the
    # machine (the timing rule itself: test_latency_is_timed_for_min_seconds_...)
    assert f32["latency_iterations"] >= 20
    assert i8["size_bytes"] < f32["size_bytes"] < base["size_bytes"]
    assert abs(i8["accuracy"] - base["accuracy"]) < 0.1
    # each candidate against the baseline on the same examples: the disagreements add up
    # to the accuracy difference, and McNemar's p-value goes with them
    assert "paired_drop" not in base
    for r in (f32, i8):
        paired = r["paired_drop"]
        assert paired["n"] == zoo["num_test"] == r["num_test"]
        assert paired["drop_points"] == pytest.approx((base["accuracy"] - r["accuracy"]) * 100)
        b, c = paired["only_reference"], paired["only_candidate"]
        assert paired["p_value"] == pytest.approx(mcnemar_p(b, c))
        assert paired["text"].startswith(f"drop {paired['drop_points']:.2f} points")


class _CountedCalls:
    """A predictor whose batch-1 calls are counted (what latency_ms times)."""

    def __init__(self, predictor: Predictor):
        self.predictor, self.calls = predictor, 0

    def single_call(self, x1):
        call = self.predictor.single_call(x1)

        def counted():
            self.calls += 1
            return call()

        return counted


def test_latency_is_timed_for_min_seconds_and_counts_every_call(zoo):
    x, _ = input_pipeline.load_arrays(schema.load_info(zoo["ds"]), "test", limit=64)
    counted = _CountedCalls(Predictor(zoo["t32"], "tflite"))
    config = ev.EvalConfig(latency_warmup=2, latency_iterations=1, latency_min_seconds=0.05)
    start = time.perf_counter()
    times = ev.latency_ms(counted, x, config)
    elapsed = time.perf_counter() - start
    assert len(times) == counted.calls - 2  # each timed call, and no warm-up call
    assert (times > 0).all()
    # the cap on calls (about 2 us a call here) stays out of reach in 0.05 s
    assert len(times) < ev._MAX_LATENCY_CALLS
    # a fast model is timed for latency_min_seconds, not only latency_iterations times ...
    assert elapsed >= 0.05
    # ... and no longer: every call but the last started before that deadline
    assert times[:-1].sum() < 50.0


def test_sparsity_is_measured_from_weights(zoo):
    rec = ev.evaluate_model(zoo["sparse"], "saved_model", zoo["ds"], FAST)
    assert rec["sparsity"] == pytest.approx(64 * 16 / (64 * 16 + 16 * 10))


def test_broken_candidates_are_recorded_with_their_error(zoo):
    root = zoo["root"]
    garbage = root / "garbage.tflite"
    garbage.write_bytes(b"not a flatbuffer" * 8)
    bad_sm = root / "bad_sm"
    bad_sm.mkdir(exist_ok=True)
    (bad_sm / "saved_model.pb").write_bytes(b"\x00corrupt")
    recs = ev.evaluate_candidates(
        [
            ev.Candidate("garbage", str(garbage), "tflite", {"params": 7}),
            ev.Candidate("bad_sm", str(bad_sm), "saved_model", {}),
            ev.Candidate("missing", str(root / "nope.tflite"), "tflite", {}),
            ev.Candidate("tflite_int8", zoo["t8"], "tflite", {}),
        ],
        zoo["ds"],
        FAST,
    )
    errors = {r["name"]: r.get("error") for r in recs}
    assert "cannot load the TFLite model" in errors["garbage"]
    assert "cannot load the SavedModel" in errors["bad_sm"]
    assert "not found" in errors["missing"]
    assert errors["tflite_int8"] is None and recs[3]["accuracy"] > 0.1
    assert recs[0]["params"] == 7 and recs[0]["params_source"] == "metadata"


def test_no_candidate_or_duplicates_fail_clearly(zoo):
    with pytest.raises(ModelError, match="no candidate"):
        ev.evaluate_candidates([], zoo["ds"])
    cand = ev.Candidate("a", zoo["t8"], "tflite", {})
    with pytest.raises(ModelError, match="repeated: a"):
        ev.evaluate_candidates([cand, cand], zoo["ds"])


def test_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="latency_iterations"):
        ev.EvalConfig(latency_iterations=0)
    with pytest.raises(ConfigError, match="throughput_batch_size"):
        ev.EvalConfig(throughput_batch_size=0)


def test_classification_metrics_by_hand():
    cm = np.array([[3, 1, 0], [0, 2, 0], [1, 0, 0]])  # class 2 never predicted right
    m = ev.classification_metrics(cm)
    assert m["accuracy"] == pytest.approx(5 / 7)
    assert m["per_class"]["precision"] == pytest.approx([0.75, 2 / 3, 0.0], abs=1e-6)
    assert m["per_class"]["recall"] == pytest.approx([0.75, 1.0, 0.0], abs=1e-6)
    assert m["per_class"]["f1"][1] == pytest.approx(0.8, abs=1e-6)
    assert m["f1"] == pytest.approx((0.75 + 0.8 + 0) / 3, abs=1e-6)
    assert m["per_class"]["support"] == [4, 2, 1]


def test_weight_stats_counts_zero_kernel_weights():
    params, sparsity = ev.weight_stats([np.zeros((4, 4)), np.ones((4, 4)), np.zeros(8)])
    assert params == 40 and sparsity == 0.5


def test_peak_memory_sees_an_allocation():
    with ev.PeakMemory() as mem:
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        del block
    assert mem.added >= 48 * 2**20
    assert mem.peak >= mem.before
    assert mem.method == ("VmHWM" if _can_reset_high_water_mark() else "psutil-sampling")


def _can_reset_high_water_mark() -> bool:
    """Whether this process may reset its VmHWM (what PeakMemory prefers to sampling)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def test_flops_from_the_pruning_steps_metadata_reach_the_lineage(digits_dir, tmp_path):
    """Copied from the metadata whether or not the model could be run; the baseline gets
    the pruned variant's flops_before, a TFLite child its parent's figure."""
    missing = str(tmp_path / "nope")
    recs = ev.evaluate_candidates(
        [
            ev.Candidate("baseline", missing, "saved_model", {}),
            ev.Candidate(
                "channel_pruned",
                missing,
                "saved_model",
                {"base": "baseline", "flops": 3_000, "flops_removed": 0.25},
            ),
            ev.Candidate("channel_pruned_int8", missing, "tflite", {"base": "channel_pruned"}),
            ev.Candidate("distilled", missing, "saved_model", {"base": "baseline"}),
        ],
        digits_dir,
        FAST,
    )
    base, pruned, child, distilled = recs
    assert all(r.get("error") for r in recs)
    assert pruned["flops"] == 3_000 and pruned["flops_source"] == "metadata"
    assert pruned["flops_before"] == base["flops"] == 4_000
    assert child["flops"] == 3_000 and child["flops_source"] == "base channel_pruned"
    assert "flops" not in distilled  # a SavedModel step of its own: no figure, off the plot
