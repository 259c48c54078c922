"""Atomic writes for local and ``gs://`` paths.

Every artifact is written to a temporary sibling and renamed into place, so a
failed or killed step never leaves a half-written artifact where a reader
(the next step, a serving process) looks.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

from tfopt.errors import TfoptError

log = logging.getLogger(__name__)

# Errors of the storage itself (not of the data): reported as StorageError.
STORAGE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EFBIG,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.EIO,
}
_TF_STORAGE_MESSAGES = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "File too large": errno.EFBIG,
    "Permission denied": errno.EACCES,
    "Read-only file system": errno.EROFS,
}
# A temporary sibling left by a process of another host is removed after this long.
STALE_TMP_SECONDS = 24 * 3600
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


class StorageError(TfoptError, OSError):
    """Writing an artifact failed for a storage reason (disk full, permission denied).

    ``errno`` is the cause, ``filename`` the artifact path; the previous content
    of the artifact (if any) is intact.
    """

    def __str__(self) -> str:
        return str(self.strerror)


def _storage_errno(exc: BaseException) -> int | None:
    if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
        return exc.errno
    if type(exc).__module__.startswith("tensorflow"):  # tf.errors.* from TF's C++ file I/O
        text = str(exc)
        for message, code in _TF_STORAGE_MESSAGES.items():
            if message in text:
                return code
    return None


def _storage_error(path: str, exc: BaseException) -> StorageError | None:
    code = _storage_errno(exc)
    if code is None or isinstance(exc, StorageError):
        return None
    where = getattr(exc, "filename", None)
    if where and where != path:
        detail = f" (while writing {where})"
    elif not isinstance(exc, OSError) and str(exc):
        detail = f" ({str(exc).splitlines()[0][:300]})"
    else:
        detail = ""
    return StorageError(
        code,
        f"cannot write {path}: {errno.errorcode.get(code, code)} "
        f"{os.strerror(code)}{detail}; the previous content is intact",
        path,
    )


def _gfile():
    # tf.io.gfile understands gs://; imported lazily to keep local I/O light.
    from tfopt._keras import tf

    return tf.io.gfile


def is_remote(path: str) -> bool:
    return "://" in path


def exists(path: str) -> bool:
    return _gfile().exists(path) if is_remote(path) else os.path.exists(path)


def _tmp_sibling(path: str) -> str:
    """``.<name>.tmp-<random>-<host>-<pid>``: hidden, and tells who wrote it."""
    path = path.rstrip("/")
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}.tmp-{uuid.uuid4().hex[:8]}-{_HOST}-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_temporary(name: str) -> bool:
    """True for a temporary sibling name (readers must ignore these)."""
    return bool(re.match(r"^\..+\.tmp-[0-9a-f]{8}", os.path.basename(name.rstrip("/"))))


def clean_stale_temporaries(path: str) -> list[str]:
    """Remove temporary siblings of ``path`` left by killed writers; return what was removed.

    A sibling is stale when the process that wrote it (same host) is gone, or it
    is older than ``STALE_TMP_SECONDS`` (another host). If ``path`` is missing
    and a stale ``.old`` sibling holds its previous content (a writer killed
    between the two renames of a replace), that content is put back first.
    Local paths only; a no-op on ``gs://``.
    """
    path = path.rstrip("/")
    if is_remote(path):
        return []
    head, tail = os.path.split(path)
    try:
        names = os.listdir(head or ".")
    except OSError:
        return []
    pattern = re.compile(
        r"^\." + re.escape(tail) + r"\.tmp-[0-9a-f]{8}(?:-([0-9a-f]{6})-(\d+))?(\.old)?$"
    )
    removed = []
    now = time.time()
    for name in sorted(names, key=lambda n: not n.endswith(".old")):  # .old first
        m = pattern.match(name)
        if not m:
            continue
        full = os.path.join(head, name)
        host, pid, old = m.group(1), m.group(2), m.group(3)
        if host == _HOST and pid is not None:
            stale = int(pid) != os.getpid() and not _pid_alive(int(pid))
        else:
            try:
                stale = now - os.lstat(full).st_mtime > STALE_TMP_SECONDS
            except OSError:
                continue
        if not stale:
            continue
        if old and not os.path.lexists(path):
            try:
                os.rename(full, path)
                log.warning("restored %s from %s (a writer was killed mid-replace)", path, name)
                continue
            except OSError:
                pass
        remove(full)
        removed.append(full)
    if removed:
        log.info("removed %d stale temporary sibling(s) of %s", len(removed), path)
    return removed


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
def _staged(path: str) -> Iterator[str]:
    """A temporary sibling of ``path`` for the caller to fill and rename into place.

    Makes the parent, clears temporaries left by dead writers, removes the
    sibling if it is still there afterwards, and turns OS / TensorFlow storage
    failures into a ``StorageError`` naming ``path`` and the cause.
    """
    parent = os.path.dirname(path)
    tmp = _tmp_sibling(path)
    try:
        if parent:
            makedirs(parent)
        clean_stale_temporaries(path)
        yield tmp
    except Exception as exc:
        wrapped = _storage_error(path, exc)
        if wrapped is not None:
            raise wrapped from exc
        raise
    finally:
        if exists(tmp):
            remove(tmp)


@contextlib.contextmanager
def atomic_dir(path: str, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary directory that becomes ``path`` only if the block succeeds.

    On a local filesystem the final step is one ``rename``; an existing
    ``path`` is replaced only after the new content is complete.
    """
    path = path.rstrip("/")
    with _staged(path) as tmp:
        makedirs(tmp)
        yield tmp
        if exists(path):
            if not overwrite:
                raise FileExistsError(errno.EEXIST, f"{path} already exists", path)
            _replace_existing(tmp, path)
        elif is_remote(path):
            _gfile().rename(tmp, path)
        else:
            os.rename(tmp, path)


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
    opener = _gfile().GFile if is_remote(path) else open
    with _staged(path) as tmp:
        with opener(tmp, mode) as fh:
            yield fh
            if not is_remote(path):
                fh.flush()
                os.fsync(fh.fileno())
        if is_remote(path):
            _gfile().rename(tmp, path, overwrite=True)
        else:
            os.replace(tmp, path)


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
            for chunk in iter(functools.partial(fh.read, 1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
