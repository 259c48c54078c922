"""TF Serving model repository: ``<model_base_path>/<model_name>/<version>/``.

A push stages a copy of the SavedModel (plus the warmup requests) under a
hidden, non-numeric temporary name that TF Serving ignores, then renames it to
the next version number. Pushing content identical to an existing version
returns that version and writes nothing. Works on local paths and ``gs://``
(``tf.io.gfile``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import time
from dataclasses import asdict, dataclass

import numpy as np

from tfopt import fsutil
from tfopt.errors import ModelError
from tfopt.serving import warmup

log = logging.getLogger(__name__)

PUSH_RECORD = os.path.join(warmup.WARMUP_DIR, "tfopt_push.json")


def _join(*parts: str) -> str:
    return posixpath.join(*parts) if fsutil.is_remote(parts[0]) else os.path.join(*parts)


def _gf():
    return fsutil._gfile()


@dataclass(frozen=True)
class PushResult:
    """Where a push went.

    Attributes:
        version: the version number serving this content.
        path: ``<model_base_path>/<model_name>/<version>``.
        content_sha256: hash of the version's files (the push record excluded).
        created: False when identical content already existed (nothing written).
    """

    version: int
    path: str
    content_sha256: str
    created: bool

    def to_dict(self) -> dict:
        return asdict(self)


def model_dir(model_base_path: str, model_name: str) -> str:
    return _join(model_base_path.rstrip("/"), model_name)


def list_versions(model_base_path: str, model_name: str) -> list[int]:
    """Numeric version directories of a model, ascending (hidden temporaries excluded)."""
    base = model_dir(model_base_path, model_name)
    if not fsutil.exists(base):
        return []
    names = _gf().listdir(base) if fsutil.is_remote(base) else os.listdir(base)
    return sorted(int(n.rstrip("/")) for n in names if n.rstrip("/").isdigit())


def content_hash(directory: str) -> str:
    """SHA-256 over relative paths and bytes of every file, the push record excluded."""
    digest = hashlib.sha256()
    root = directory.rstrip("/")
    for path in fsutil.iter_files(root):
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        if rel == PUSH_RECORD.replace(os.sep, "/"):
            continue
        digest.update(rel.encode() + b"\0")
        digest.update(fsutil.sha256_files([path]).encode() + b"\0")
    return digest.hexdigest()


def _version_hash(path: str) -> str:
    record = _join(path, PUSH_RECORD)
    if fsutil.exists(record):
        try:
            return fsutil.read_json(record)["content_sha256"]
        except (ValueError, KeyError):
            pass
    return content_hash(path)


def _copy_tree(src: str, dst: str) -> None:
    src = src.rstrip("/")
    for path in fsutil.iter_files(src):
        rel = os.path.relpath(path, src)
        target = _join(dst, *rel.split(os.sep))
        fsutil.makedirs(os.path.dirname(target))
        _gf().copy(path, target, overwrite=True)


class _Identical(Exception):
    def __init__(self, version: int):
        super().__init__(version)
        self.version = version


def push_model(source_dir: str, model_base_path: str, model_name: str,
               warmup_examples: np.ndarray | None = None) -> PushResult:
    """Push a SavedModel into the repository as the next version.

    Args:
        source_dir: SavedModel directory (never modified).
        model_base_path: repository root (local or ``gs://``).
        model_name: model name; the version goes to ``<root>/<model_name>/<version>``.
        warmup_examples: real feature rows to record as warmup requests; None keeps
            whatever warmup file the source already has.

    Returns:
        PushResult; ``created`` is False when identical content was already there.
    """
    if not fsutil.exists(_join(source_dir, "saved_model.pb")):
        raise ModelError(f"{source_dir}: not a SavedModel directory (no saved_model.pb)")
    if not model_name or "/" in model_name or model_name.startswith("."):
        raise ModelError(f"model_name={model_name!r} is not allowed: expected a plain name")
    base = model_dir(model_base_path, model_name)
    fsutil.makedirs(base)
    for _attempt in range(5):
        versions = list_versions(model_base_path, model_name)
        version = (versions[-1] + 1) if versions else 1
        target = _join(base, str(version))
        try:
            with fsutil.atomic_dir(target, overwrite=False) as tmp:
                _copy_tree(source_dir, tmp)
                if fsutil.exists(_join(tmp, PUSH_RECORD)):
                    fsutil.remove(_join(tmp, PUSH_RECORD))
                if warmup_examples is not None:
                    warmup.write_warmup(tmp, warmup_examples, model_name)
                digest = content_hash(tmp)
                for v in reversed(versions):
                    if _version_hash(_join(base, str(v))) == digest:
                        raise _Identical(v)  # leaves the block: the staged copy is removed
                fsutil.write_json(_join(tmp, PUSH_RECORD), {
                    "content_sha256": digest, "source": source_dir, "version": version,
                    "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        except _Identical as same:
            log.info("push: %s is identical to version %d; nothing written", source_dir,
                     same.version)
            return PushResult(same.version, _join(base, str(same.version)), digest,
                              created=False)
        except (FileExistsError, OSError) as exc:
            if fsutil.exists(target):  # another pusher took this version: try the next
                log.info("push: version %d appeared meanwhile (%s); retrying", version, exc)
                continue
            raise
        log.info("push: %s -> %s", source_dir, target)
        return PushResult(version, target, digest, created=True)
    raise ModelError(f"push to {base}: versions kept changing underneath; try again")
