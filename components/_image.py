"""The container image every component runs in: one tag per tfopt version.

Components are lightweight Python components whose bodies import ``tfopt``
from this image, so nothing is pip-installed when a step starts (clusters
often have no egress) and KFP's local runner runs the very same code.
Override the registry with ``TFOPT_IMAGE_REPO`` when compiling.
"""

import os

from tfopt import __version__

IMAGE_REPO = os.environ.get("TFOPT_IMAGE_REPO", "ghcr.io/tfopt/tfopt")
BASE_IMAGE = f"{IMAGE_REPO}:{__version__}"
GPU_IMAGE = f"{IMAGE_REPO}-gpu:{__version__}"

# Keyword arguments shared by every @dsl.component in tfopt.
COMPONENT_KWARGS = {"base_image": BASE_IMAGE, "install_kfp_package": False}
GPU_COMPONENT_KWARGS = {"base_image": GPU_IMAGE, "install_kfp_package": False}
