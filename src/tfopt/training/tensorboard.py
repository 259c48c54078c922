"""Observability helpers: one TensorBoard tree per pipeline run.

Every training-like step (train, prune, distill, QAT, tune) writes its
TensorBoard logs to its own ``tensorboard`` output artifact. KFP places every
artifact of a run under one run directory
(``<pipeline_root>/<pipeline run>/<task>/<output>``), so
``tensorboard --logdir <run directory>`` shows all steps side by side, each as
its own run. Inside a step, work with several fits (one per tuning trial, one
per phase) goes in named sub-directories made by :func:`tensorboard_subdir`.
"""

from __future__ import annotations

import os
import re

from tfopt import fsutil
from tfopt.errors import ConfigError

EVENT_FILE_MARK = "tfevents"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(step_name: str) -> str:
    """``step_name`` as one safe path component (``"QAT fine-tune"`` -> ``"QAT_fine-tune"``)."""
    if not isinstance(step_name, str) or not step_name.strip():
        raise ConfigError(f"step_name={step_name!r} is not allowed: expected a non-empty string")
    name = _SAFE.sub("_", step_name.strip()).strip("._")
    if not name:
        raise ConfigError(f"step_name={step_name!r} is not allowed: expected letters or digits")
    return name


def tensorboard_subdir(root: str | None, step_name: str) -> str | None:
    """The TensorBoard directory of ``step_name`` under ``root`` (created); None if no root.

    Args:
        root: a step's TensorBoard directory (its ``tensorboard`` artifact path),
            local or ``gs://``; None turns logging off.
        step_name: what the logs are about, e.g. ``"train"``, ``"trial_03"``.
    """
    if not root:
        return None
    path = os.path.join(root.rstrip("/"), safe_name(step_name))
    fsutil.makedirs(path)
    return path


def event_dirs(root: str) -> list[str]:
    """Directories under ``root`` (relative, sorted) holding TensorBoard event files.

    These are the runs ``tensorboard --logdir root`` lists.
    """
    if not fsutil.exists(root):
        return []
    root = root.rstrip("/")
    dirs = {
        os.path.relpath(os.path.dirname(f), root)
        for f in fsutil.iter_files(root)
        if EVENT_FILE_MARK in os.path.basename(f)
    }
    return sorted(dirs)


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """Scalars logged in the event files directly in ``logdir``: tag -> [(step, value)]."""
    from tfopt._keras import tf

    out: dict[str, list[tuple[int, float]]] = {}
    files = sorted(f for f in tf.io.gfile.listdir(logdir) if EVENT_FILE_MARK in f)
    for name in files:
        for event in tf.compat.v1.train.summary_iterator(os.path.join(logdir, name)):
            for value in event.summary.value:
                if value.HasField("tensor"):
                    number = tf.make_ndarray(value.tensor)
                    if number.ndim != 0 or number.dtype.kind not in "fiu":
                        continue
                    out.setdefault(value.tag, []).append((int(event.step), float(number)))
                elif value.HasField("simple_value"):
                    out.setdefault(value.tag, []).append(
                        (int(event.step), float(value.simple_value))
                    )
    return out


def logdir_spec(named_dirs: dict[str, str]) -> str:
    """``--logdir_spec`` value showing chosen directories under chosen names."""
    return ",".join(f"{safe_name(name)}:{path}" for name, path in named_dirs.items())
