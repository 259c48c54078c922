"""The container image every component runs in: one tag per tfopt version.

Components are lightweight Python components whose bodies import ``tfopt``
from this image, so nothing is pip-installed when a step starts (clusters
often have no egress) and KFP's local runner runs the very same code.
Override the registry with ``TFOPT_IMAGE_REPO`` when compiling, and pin what was
pushed with ``TFOPT_IMAGE_DIGEST`` / ``TFOPT_GPU_IMAGE_DIGEST`` (``sha256:...``; the
reference becomes ``repo:version@sha256:...``, docs/containers.md).
"""

import os
import re

from tfopt import __version__
from tfopt.errors import ConfigError

IMAGE_REPO = os.environ.get("TFOPT_IMAGE_REPO", "ghcr.io/tfopt/tfopt")


def _pinned(ref: str, digest_env: str) -> str:
    digest = os.environ.get(digest_env, "")
    if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ConfigError(f"{digest_env}={digest!r}: expected sha256: and 64 hex digits")
    return f"{ref}@{digest}" if digest else ref


BASE_IMAGE = _pinned(f"{IMAGE_REPO}:{__version__}", "TFOPT_IMAGE_DIGEST")
GPU_IMAGE = _pinned(f"{IMAGE_REPO}-gpu:{__version__}", "TFOPT_GPU_IMAGE_DIGEST")

# Keyword arguments shared by every @dsl.component in tfopt.
COMPONENT_KWARGS = {"base_image": BASE_IMAGE, "install_kfp_package": False}
GPU_COMPONENT_KWARGS = {"base_image": GPU_IMAGE, "install_kfp_package": False}
