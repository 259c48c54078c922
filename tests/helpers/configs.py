"""Pipeline parameters shared by the tests (and benchmarks) that run whole pipelines."""

# every variant but the baseline and its int8 TFLite switched off
INT8_ONLY = {
    f"enable_{name}": False
    for name in (
        "tflite_float32",
        "tflite_dynamic",
        "tflite_float16",
        "pruning",
        "distillation",
        "lowrank",
        "qat",
    )
}

# a small CNN on tiny budgets (tests/local/test_optimize_local.py's), baseline + int8 only
FAST = {
    "arch": "cnn",
    "width": 8,
    "depth": 2,
    "epochs": 4,
    "early_stopping_patience": 0,
    "latency_iterations": 20,
    "representative_samples": 50,
    **INT8_ONLY,
    "max_accuracy_drop": 5.0,
}
