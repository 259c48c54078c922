"""Rollback targets: only versions that loaded, passed their smoke test and are still intact.

A deploy keeps one earlier version loaded beside the new one so the ``stable``
label can move back at once. That version must be one that works: the
repository records every version whose smoke test passed (``VERIFIED`` in the
model's directory, beside the numbered versions, which
:func:`tfopt.deploy.serving.repository.list_versions` ignores), and a recorded
version is re-checked (``saved_model.pb`` parses, variable checksums hold)
before it is chosen, since files can be damaged after they were served.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from tfopt import fsutil
from tfopt.deploy.serving import repository
from tfopt.errors import ModelError

log = logging.getLogger(__name__)

VERIFIED = "tfopt_verified.json"


def _record_path(model_base_path: str, model_name: str) -> str:
    return repository._join(repository.model_dir(model_base_path, model_name), VERIFIED)


def verified_versions(model_base_path: str, model_name: str) -> list[int]:
    """Versions whose smoke test passed, oldest first (empty when none was recorded)."""
    path = _record_path(model_base_path, model_name)
    if not fsutil.exists(path):
        return []
    try:
        values = fsutil.read_json(path).get("verified", [])
        return sorted({int(v) for v in values})
    except (ValueError, TypeError, AttributeError):
        log.warning("%s: unreadable; no version counts as verified", path)
        return []


def mark_verified(model_base_path: str, model_name: str, version: int) -> None:
    """Record that ``version`` loaded and passed its smoke test (call under the repo lock)."""
    versions = sorted(set(verified_versions(model_base_path, model_name)) | {int(version)})
    fsutil.write_json(_record_path(model_base_path, model_name), {"verified": versions})


def rollback_target(
    model_base_path: str,
    model_name: str,
    candidates: Sequence[int | None],
    exclude: int,
) -> tuple[int | None, list[str]]:
    """The first of ``candidates`` that is verified (or served before records existed) and intact.

    Args:
        model_base_path / model_name: the repository and model.
        candidates: versions in order of preference (the current ``stable`` first).
        exclude: the version being deployed (never its own rollback target).

    Returns:
        ``(version or None, reasons)``: each skipped candidate with why.
    """
    verified = set(verified_versions(model_base_path, model_name))
    base = repository.model_dir(model_base_path, model_name)
    reasons, seen = [], set()
    for v in candidates:
        if v is None or v == exclude or v in seen:
            continue
        seen.add(v)
        if verified and v not in verified:
            reasons.append(f"version {v} never passed a smoke test")
            continue
        try:
            repository.check_saved_model(repository._join(base, str(v)))
        except ModelError as exc:
            reasons.append(f"version {v} is damaged ({exc})")
            continue
        return v, reasons
    return None, reasons
