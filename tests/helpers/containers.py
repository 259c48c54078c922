"""Shared by tests/integration/test_containers.py and benchmarks/containers.py.

No ``from __future__ import annotations``: kfp reads the component's annotations as types.
"""

from kfp import dsl

from tfopt.components._image import BASE_IMAGE

from helpers import configs

# The fast configuration, deployed to the local TF Serving repository with its smoke test.
FAST = configs.FAST


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def quick(code: int) -> str:
    """A step that ends at once: exit status ``code`` (0: returns "done")."""
    import sys

    if code:
        sys.exit(code)
    return "done"
