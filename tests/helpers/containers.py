"""Shared by tests/integration/test_containers.py and benchmarks/containers.py.

No ``from __future__ import annotations``: kfp reads the component's annotations as types.
"""

from kfp import dsl

from tfopt.components._image import BASE_IMAGE

# The fast configuration (tests/local/test_optimize_local.py's budgets): baseline and
# int8 only, deployed to the local TF Serving repository with its smoke test.
FAST = {
    "arch": "cnn",
    "width": 8,
    "depth": 2,
    "epochs": 4,
    "early_stopping_patience": 0,
    "latency_iterations": 20,
    "representative_samples": 50,
    "enable_tflite_float32": False,
    "enable_tflite_dynamic": False,
    "enable_tflite_float16": False,
    "enable_pruning": False,
    "enable_distillation": False,
    "enable_lowrank": False,
    "enable_qat": False,
    "max_accuracy_drop": 5.0,
}


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def quick(code: int) -> str:
    """A step that ends at once: exit status ``code`` (0: returns "done")."""
    import sys

    if code:
        sys.exit(code)
    return "done"
