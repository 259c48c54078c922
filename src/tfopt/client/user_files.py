"""The user's own files a run reads (``module_file``, ``model_uri``), made readable by its steps.

A local run copies a local ``module_file`` into the pipeline root
(``<root>/modules/<sha256>.py``) and passes that copy, so the run keeps the code it ran
with even when the original is edited afterwards (and cached steps key on its hash). A
submitted run's steps read the files in the cluster, where this machine's paths do not
exist: :func:`require_remote` refuses them before anything is submitted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from typing import Any

from tfopt.errors import ConfigError

USER_FILE_PARAMS = ("module_file", "model_uri")


def _is_local(value: str) -> bool:
    return bool(value) and "://" not in value


def stage_module_file(params: dict[str, Any], pipeline_root: str) -> dict[str, Any]:
    """``params`` with a local ``module_file`` replaced by its copy under ``pipeline_root``."""
    path = params.get("module_file", "")
    if not _is_local(path):
        return params
    with open(path, "rb") as fh:
        sha = hashlib.sha256(fh.read()).hexdigest()
    target = os.path.join(pipeline_root, "modules", f"{sha}.py")
    if not os.path.exists(target):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.tmp-{os.getpid()}"
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    return {**params, "module_file": target}


def require_remote(params: dict[str, Any]) -> None:
    """Refuse local paths in ``module_file`` / ``model_uri`` of a submitted run."""
    for name in USER_FILE_PARAMS:
        value = params.get(name, "")
        if _is_local(value):
            raise ConfigError(
                f"{name}={value!r} is a local path, which a submitted run's steps cannot read: "
                "copy it to storage the cluster reads (e.g. `gsutil cp` to your pipeline root) "
                f"and pass that gs:// URI"
            )
