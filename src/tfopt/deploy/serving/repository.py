"""TF Serving model repository: ``<model_base_path>/<model_name>/<version>/``.

A push stages a copy of the SavedModel (plus the warmup requests) under a
hidden, non-numeric temporary name that TF Serving ignores, then renames it to
the next version number. Pushing content identical to an existing version
returns that version and writes nothing. Works on local paths and ``gs://``
(``tf.io.gfile``).

Concurrency: every read-modify-write of a repository (choosing the next
version, the identical-content check, editing ``models.config``) runs under
:func:`repo_lock`, an exclusive ``flock`` on ``<root>/.tfopt-repo.lock``. The
kernel drops the lock when its holder dies (SIGKILL included), so there is no
stale lock to detect or break. The rename of the staged version onto a name
that must not exist stays as a second guard. ``gs://`` has no lock primitive in
``tf.io.gfile``: there the lock is skipped with a warning (serialize deploys to
one bucket path, e.g. one deploy step at a time).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import posixpath
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from tfopt import fsutil
from tfopt.deploy.serving import warmup
from tfopt.errors import ModelError

log = logging.getLogger(__name__)

PUSH_RECORD = os.path.join(warmup.WARMUP_DIR, "tfopt_push.json")
LOCK_FILE = ".tfopt-repo.lock"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_held = threading.local()


def check_model_name(model_name: str, field: str = "model_name") -> str:
    """A name used as a directory: letters, digits, ``_ . -``, no ``..``; else ModelError."""
    if not isinstance(model_name, str) or not _NAME.match(model_name) or ".." in model_name:
        raise ModelError(
            f"{field}={model_name!r} is not allowed: expected a plain name of "
            f"1-128 letters, digits, '_', '.', '-' (not starting with '.' or "
            f"'-', no '/' or '..')"
        )
    return model_name


@contextlib.contextmanager
def repo_lock(model_base_path: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold the repository's exclusive lock (re-entrant within a thread).

    Raises:
        ModelError: the lock was not obtained within ``timeout_s`` (names the holder).
    """
    root = model_base_path.rstrip("/") or "/"
    if fsutil.is_remote(root):
        log.warning(
            "%s: no lock on remote repositories; concurrent pushes must be "
            "serialized by the caller",
            root,
        )
        yield
        return
    import fcntl

    key = os.path.realpath(root)
    held = getattr(_held, "locks", None)
    if held is None:
        held = _held.locks = {}
    if held.get(key):
        held[key] += 1
        try:
            yield
        finally:
            held[key] -= 1
        return
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                    raise ModelError(
                        f"{root}: repository locked by another writer for "
                        f"{timeout_s:.0f}s ({holder or 'holder unknown'})"
                    ) from None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.pwrite(
            fd,
            f"pid={os.getpid()} host={socket.gethostname()} "
            f"since={time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode(),
            0,
        )
        held[key] = 1
        try:
            yield
        finally:
            held.pop(key, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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
    # Numeric names only: temporaries (.3.tmp-...) and other files are not versions.
    return sorted(int(n.rstrip("/")) for n in names if n.rstrip("/").isdigit())


# Bumped when content_hash changes meaning; push records of another scheme are re-hashed.
HASH_SCHEME = 2  # 2: fingerprint.pb without its per-save UUID
FINGERPRINT = "fingerprint.pb"


def content_hash(directory: str) -> str:
    """SHA-256 over relative paths and bytes of every file, the push record excluded.

    ``fingerprint.pb`` counts without its ``uuid``: TensorFlow writes a fresh
    random UUID on every save, so two saves of the same model would otherwise
    always differ (its other fields hash the graph, signatures and checkpoint,
    so they still tell different models apart).
    """
    digest = hashlib.sha256()
    root = directory.rstrip("/")
    for path in fsutil.iter_files(root):
        rel = os.path.relpath(path, root).replace(os.sep, "/")
        if rel == PUSH_RECORD.replace(os.sep, "/"):
            continue
        digest.update(rel.encode() + b"\0")
        file_hash = _fingerprint_hash(path) if rel == FINGERPRINT else None
        digest.update((file_hash or fsutil.sha256_files([path])).encode() + b"\0")
    return digest.hexdigest()


def _fingerprint_hash(path: str) -> str | None:
    """SHA-256 of a SavedModel fingerprint with its UUID cleared (None: unreadable)."""
    try:
        from tensorflow.core.protobuf import fingerprint_pb2

        with _gf().GFile(path, "rb") as fh:
            fingerprint = fingerprint_pb2.FingerprintDef.FromString(fh.read())
    except Exception:  # not a fingerprint we can read: hash its bytes instead
        return None
    fingerprint.ClearField("uuid")
    return hashlib.sha256(fingerprint.SerializeToString(deterministic=True)).hexdigest()


def _version_hash(path: str) -> str:
    record = _join(path, PUSH_RECORD)
    if fsutil.exists(record):
        try:
            payload = fsutil.read_json(record)
            if payload.get("hash_scheme") == HASH_SCHEME:
                return payload["content_sha256"]
        except (ValueError, KeyError, AttributeError):
            pass
    return content_hash(path)


def _copy_tree(src: str, dst: str) -> None:
    src = src.rstrip("/")
    for path in fsutil.iter_files(src):
        rel = os.path.relpath(path, src)
        target = _join(dst, *rel.split(os.sep))
        fsutil.makedirs(os.path.dirname(target))
        _gf().copy(path, target, overwrite=True)


def check_saved_model(path: str) -> None:
    """Parse ``saved_model.pb`` and verify every variable's checksum; ModelError otherwise.

    Catches truncated or bit-flipped SavedModels before they reach a server
    (a flip that still parses and keeps every checksum cannot be detected).
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    from tfopt._keras import tf

    pb = _join(path, "saved_model.pb")
    sm = saved_model_pb2.SavedModel()
    try:
        with _gf().GFile(pb, "rb") as fh:
            sm.ParseFromString(fh.read())
    except (DecodeError, RuntimeWarning, ValueError) as exc:
        raise ModelError(f"{pb}: corrupt SavedModel ({type(exc).__name__}: {exc})") from None
    if len(sm.meta_graphs) != 1 or "serving_default" not in sm.meta_graphs[0].signature_def:
        raise ModelError(
            f"{path}: SavedModel has no serving_default signature (corrupt or "
            f"not exported by tfopt.training.models.save_model)"
        )
    index = _join(path, "variables", "variables.index")
    if not fsutil.exists(index):
        return
    try:
        reader = tf.train.load_checkpoint(_join(path, "variables", "variables"))
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as exc:  # DataLossError, OutOfRangeError, ... for a corrupt bundle
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(
            f"{path}: corrupt SavedModel variables ({type(exc).__name__}: {first})"
        ) from None


class _Identical(Exception):  # noqa: N818 - a control-flow signal, not an error
    def __init__(self, version: int):
        super().__init__(version)
        self.version = version


def push_model(
    source_dir: str,
    model_base_path: str,
    model_name: str,
    warmup_examples: np.ndarray | None = None,
) -> PushResult:
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
    check_model_name(model_name)
    if not fsutil.exists(_join(source_dir, "saved_model.pb")):
        raise ModelError(f"{source_dir}: not a SavedModel directory (no saved_model.pb)")
    check_saved_model(source_dir)
    with repo_lock(model_base_path):
        return _push_locked(source_dir, model_base_path, model_name, warmup_examples)


def _push_locked(
    source_dir: str, model_base_path: str, model_name: str, warmup_examples: np.ndarray | None
) -> PushResult:
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
                fsutil.write_json(
                    _join(tmp, PUSH_RECORD),
                    {
                        "content_sha256": digest,
                        "hash_scheme": HASH_SCHEME,
                        "source": source_dir,
                        "version": version,
                        "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    },
                )
        except _Identical as same:
            log.info(
                "push: %s is identical to version %d; nothing written", source_dir, same.version
            )
            return PushResult(same.version, _join(base, str(same.version)), digest, created=False)
        except (FileExistsError, OSError) as exc:
            if fsutil.exists(target):  # another pusher took this version: try the next
                log.info("push: version %d appeared meanwhile (%s); retrying", version, exc)
                continue
            raise
        log.info("push: %s -> %s", source_dir, target)
        return PushResult(version, target, digest, created=True)
    raise ModelError(f"push to {base}: versions kept changing underneath; try again")
