"""The report's trade-off plots read as a person reads them (issue 32, item 5): which
points are named, what counts as the front, which rows are for another target, and no
two names printed over each other."""

from __future__ import annotations

import itertools

from tfopt.reporting import plots, sections


def _variant(name, fmt, size, accuracy, rejected=()):
    return {
        "name": name,
        "format": fmt,
        "size_bytes": size,
        "accuracy": accuracy,
        "rejected_reasons": list(rejected),
    }


def _summary(target: str) -> dict:
    # six TFLite rows clustered at one accuracy, as in the default run, and three SavedModels
    tflite = [_variant(f"tflite_{i}", "tflite", 15_000 + 300 * i, 0.986) for i in range(6)]
    return {
        "baseline": "baseline",
        "selected": "distilled",
        "policy": {"deploy_target": target},
        "variants": [
            _variant("baseline", "saved_model", 750_000, 0.986),
            _variant("distilled", "saved_model", 165_000, 0.990),
            _variant("lowrank", "saved_model", 740_000, 0.970, ["accuracy drop 1.6 > 1"]),
            *tflite,
        ],
    }


def test_tf_serving_plots_tflite_as_another_target_and_its_front_of_saved_models():
    points = {p["name"]: p for p in plots.tradeoff_points(_summary("tf_serving"), "size_bytes")}
    assert {n for n, p in points.items() if p["role"] == "other target"} == {
        f"tflite_{i}" for i in range(6)
    }
    assert points["lowrank"]["role"] == "rejected" and points["baseline"]["role"] == "acceptable"
    # the front of what TF Serving can serve: distilled beats the baseline on both
    assert {n for n, p in points.items() if p["front"]} == {"distilled"}
    assert {n for n, p in points.items() if p["label"]} == {"distilled", "baseline"}


def test_with_no_target_the_front_is_over_every_variant_and_only_it_is_named():
    points = plots.tradeoff_points(_summary("none"), "size_bytes")
    assert not any(p["role"] == "other target" for p in points)
    front = {p["name"] for p in points if p["front"]}
    assert front == {"tflite_0", "distilled"}  # the smallest TFLite row, the most accurate
    named = {p["name"] for p in points if p["label"]}
    assert named == front | {"baseline"}  # the five other TFLite rows are left to the table


def test_names_of_clustered_points_do_not_print_over_each_other():
    plt = plots._pyplot()
    fig, ax = plt.subplots(figsize=(7.6, 4.0))
    points = plots.tradeoff_points(_summary("none"), "size_bytes")
    for p in points:
        p["label"] = True  # the worst case: all nine named, six of them in one cluster
    ax.scatter([p["x"] for p in points], [p["y"] for p in points])
    ax.set_xscale("log")
    plots._label(ax, points)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == len(points)
    for a, b in itertools.combinations(boxes, 2):
        assert not a.overlaps(b), (a, b)
    plt.close(fig)


def test_the_plot_is_a_png():
    png = plots.plot_tradeoff(_summary("tf_serving"), "size_bytes", "size (bytes)", log_x=True)
    assert png.startswith(b"\x89PNG")


def test_the_flops_plot_is_a_png_with_a_name_per_candidate():
    summary = {
        "baseline": "baseline",
        "variants": [
            {**_variant("baseline", "saved_model", 750_000, 0.986), "flops": 2_000_000,
             "latency_ms_p50": 0.4},
            {**_variant("channel_pruned", "saved_model", 400_000, 0.984), "flops": 900_000,
             "latency_ms_p50": 0.28},
            {**_variant("tflite_int8", "tflite", 200_000, 0.985), "flops": 2_000_000,
             "latency_ms_p50": 0.05, "quantization": "int8"},
            {**_variant("channel_pruned_int8", "tflite", 110_000, 0.983), "flops": 900_000,
             "latency_ms_p50": 0.03, "quantization": "int8"},
        ],
    }  # fmt: skip
    points = sections.flops_points(summary)
    assert [round(p["removed"] * 100) for p in points] == [0, 55, 0, 55]
    png = plots.plot_flops_latency(points)
    assert png.startswith(b"\x89PNG")
