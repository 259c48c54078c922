"""Atomic writes for local and ``gs://`` paths.

Every artifact is written to a temporary sibling and renamed into place, so a
failed or killed step never leaves a half-written artifact where a reader
(the next step, a serving process) looks.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import Any


def _gfile():
    # tf.io.gfile understands gs://; imported lazily to keep local I/O light.
    from tfopt._keras import tf

    return tf.io.gfile


def is_remote(path: str) -> bool:
    return "://" in path


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def _tmp_sibling(path: str) -> str:
    path = path.rstrip("/")
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:8]}")


def remove(path: str) -> None:
    if is_remote(path):
        gf = _gfile()
        if gf.isdir(path):
            gf.rmtree(path)
        elif gf.exists(path):
            gf.remove(path)
    elif os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        os.remove(path)


def makedirs(path: str) -> None:
    if is_remote(path):
        _gfile().makedirs(path)
    else:
        os.makedirs(path, exist_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary directory that becomes ``path`` only if the block succeeds.

    On a local filesystem the final step is one ``rename``; an existing
    ``path`` is replaced only after the new content is complete.
    """
    path = path.rstrip("/")
    parent = os.path.dirname(path)
    if parent:
        makedirs(parent)
    tmp = _tmp_sibling(path)
    makedirs(tmp)
    try:
        yield tmp
        if exists(path):
            if not overwrite:
                raise FileExistsError(f"{path} already exists")
            _replace_existing(tmp, path)
        elif is_remote(path):
            _gfile().rename(tmp, path)
        else:
            os.rename(tmp, path)
    finally:
        if exists(tmp):
            remove(tmp)


def _replace_existing(tmp: str, path: str) -> None:
    if is_remote(path):
        remove(path)
        _gfile().rename(tmp, path)
        return
    old = _tmp_sibling(path) + ".old"
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    remove(old)


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w") -> Iterator[Any]:
    """Open a temporary sibling for writing; rename it to ``path`` on success."""
    parent = os.path.dirname(path)
    if parent:
        makedirs(parent)
    tmp = _tmp_sibling(path)
    opener = _gfile().GFile if is_remote(path) else open
    try:
        with opener(tmp, mode) as fh:
            yield fh
            if not is_remote(path):
                fh.flush()
                os.fsync(fh.fileno())
        if is_remote(path):
            _gfile().rename(tmp, path, overwrite=True)
        else:
            os.replace(tmp, path)
    finally:
        if exists(tmp):
            remove(tmp)


def write_json(path: str, payload: Any) -> None:
    with atomic_file(path) as fh:
        json.dump(payload, fh, indent=2, sort_keys=False, default=_json_default)
        fh.write("\n")


def read_json(path: str) -> Any:
    opener = _gfile().GFile if is_remote(path) else open
    with opener(path) as fh:
        return json.load(fh)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def iter_files(path: str) -> list[str]:
    """All files under ``path`` (a file or directory), sorted, as full paths."""
    if is_remote(path):
        gf = _gfile()
        if not gf.isdir(path):
            return [path]
        return sorted(os.path.join(d, f) for d, _, files in gf.walk(path) for f in files)
    if os.path.isfile(path):
        return [path]
    return sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files)


def size_bytes(path: str) -> int:
    """Total size of a file or of every file in a directory."""
    if is_remote(path):
        gf = _gfile()
        return sum(gf.stat(f).length for f in iter_files(path))
    return sum(os.path.getsize(f) for f in iter_files(path))


def gzip_bytes(path: str) -> int:
    """Size after gzip (level 9) of a file, or of every file of a directory summed."""
    total = 0
    for f in iter_files(path):
        with open(f, "rb") if not is_remote(f) else _gfile().GFile(f, "rb") as fh:
            total += len(gzip.compress(fh.read(), compresslevel=9, mtime=0))
    return total


def sha256_files(paths: list[str]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        opener = _gfile().GFile if is_remote(p) else open
        with opener(p, "rb") as fh:
            for chunk in iter(lambda fh=fh: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
