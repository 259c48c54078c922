"""Disk full and permission errors in the middle of an artifact; stale temporaries.

The failures are real where this machine allows it: EFBIG from a file-size
limit (``RLIMIT_FSIZE``, which binds root too) and EACCES from a process that
dropped root (``setuid(nobody)``) after its imports. ENOSPC cannot be produced
without a small filesystem (no tmpfs mount here), so it is injected at the OS
boundary (``os.fsync``, where delayed-allocation ENOSPC really surfaces, and a
file write inside the block).
"""

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from tfopt import fsutil
from tfopt.errors import TfoptError


def _run(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _names(path) -> list[str]:
    return sorted(os.listdir(path))


def test_enospc_at_fsync_keeps_previous_file_and_names_path_and_cause(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    fsutil.write_json(str(path), {"v": 1})

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(fsutil.StorageError) as err:
        fsutil.write_json(str(path), {"v": 2, "pad": "x" * 10000})
    assert err.value.errno == errno.ENOSPC
    assert err.value.filename == str(path)
    assert str(path) in str(err.value) and "ENOSPC" in str(err.value)
    assert isinstance(err.value, TfoptError) and isinstance(err.value, OSError)
    assert json.loads(path.read_text()) == {"v": 1}
    assert _names(tmp_path) == ["summary.json"]


def test_enospc_mid_directory_keeps_previous_directory(tmp_path):
    target = tmp_path / "model"
    with fsutil.atomic_dir(str(target)) as tmp:
        Path(tmp, "a.bin").write_bytes(b"old")
    with (
        pytest.raises(fsutil.StorageError, match="ENOSPC") as err,
        fsutil.atomic_dir(str(target)) as tmp,
    ):
        Path(tmp, "a.bin").write_bytes(b"new" * 100)
        raise OSError(errno.ENOSPC, "No space left on device", os.path.join(tmp, "b.bin"))
    assert err.value.errno == errno.ENOSPC
    assert "b.bin" in str(err.value)  # the file being written is named too
    assert _names(tmp_path) == ["model"]
    assert Path(target, "a.bin").read_bytes() == b"old"


def test_unrelated_errors_are_not_relabelled(tmp_path):
    with pytest.raises(FileNotFoundError), fsutil.atomic_dir(str(tmp_path / "d")):
        (tmp_path / "missing" / "x").read_text()
    with pytest.raises(KeyError), fsutil.atomic_file(str(tmp_path / "f")):
        raise KeyError("k")
    assert _names(tmp_path) == []


def test_real_efbig_from_file_size_limit_during_ingest(tmp_path):
    out = tmp_path / "ds"
    proc = _run(
        """
        import json, resource, signal, sys
        from tfopt.data import ingest, schema
        from tfopt import fsutil
        out = sys.argv[1]
        first = ingest.ingest(out, ingest.IngestConfig(source="builtin:synthetic",
                            synthetic_examples=200, synthetic_shape=(4,)))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        try:
            ingest.ingest(out, ingest.IngestConfig(source="builtin:synthetic",
                        synthetic_examples=5000, synthetic_shape=(16,)))
        except fsutil.StorageError as exc:
            print(json.dumps({"errno": exc.errno, "msg": str(exc), "path": exc.filename,
                              "hash": first.content_sha256}))
        """,
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["errno"] == errno.EFBIG and report["path"] == str(out)
    assert str(out) in report["msg"] and "File too large" in report["msg"]
    from tfopt.data import schema

    assert schema.load_info(str(out)).content_sha256 == report["hash"]  # previous intact
    assert _names(tmp_path) == ["ds"]


def test_real_eacces_when_not_allowed_to_write(tmp_path):
    # tmp_path's parents are 0700 (pytest): use a traversable directory of our own.
    root = tempfile.mkdtemp(prefix="tfopt-eacces-")
    try:
        os.chmod(root, 0o755)
        art = os.path.join(root, "artifact.json")
        fsutil.write_json(art, {"v": 1})
        proc = _run(
            """
            import json, os, sys
            from tfopt import fsutil
            os.setgid(65534); os.setuid(65534)  # drop root: permissions now apply
            try:
                fsutil.write_json(sys.argv[1], {"v": 2})
            except fsutil.StorageError as exc:
                print(json.dumps({"errno": exc.errno, "msg": str(exc), "path": exc.filename}))
            try:
                with fsutil.atomic_dir(sys.argv[1] + ".d") as tmp:
                    pass
            except fsutil.StorageError as exc:
                print(json.dumps({"errno": exc.errno, "msg": str(exc), "path": exc.filename}))
            """,
            art,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        reports = [json.loads(line) for line in proc.stdout.strip().splitlines()]
        assert [r["errno"] for r in reports] == [errno.EACCES, errno.EACCES]
        assert reports[0]["path"] == art and art in reports[0]["msg"]
        assert "Permission denied" in reports[0]["msg"]
        assert json.loads(Path(art).read_text()) == {"v": 1}
        assert _names(root) == ["artifact.json"]
    finally:
        fsutil.remove(root)


def test_stale_temporaries_of_killed_writers_are_cleaned_on_rerun(tmp_path):
    target = str(tmp_path / "out")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from tfopt import fsutil
        with fsutil.atomic_dir(sys.argv[1]) as tmp:
            Path(tmp, "half").write_text("x")
            print("staged", flush=True)
            time.sleep(60)
        """),
            target,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "staged"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = _names(tmp_path)
    assert len(left) == 1 and fsutil.is_temporary(left[0]) and not os.path.exists(target)
    # A temporary of a live writer (this process) and of another host are kept.
    mine = fsutil._tmp_sibling(target)
    os.mkdir(mine)
    other = str(tmp_path / ".out.tmp-0123abcd-ffffff-1")
    os.mkdir(other)
    with fsutil.atomic_dir(target) as tmp:
        Path(tmp, "full").write_text("y")
    assert _names(tmp_path) == sorted(["out", os.path.basename(mine), os.path.basename(other)])
    assert _names(target) == ["full"]


def test_killed_between_renames_of_a_replace_restores_previous_content(tmp_path):
    target = tmp_path / "out"
    # What a writer killed after ``rename(path, old)`` leaves: only the .old sibling.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    old = tmp_path / f".out.tmp-0123abcd-{fsutil._HOST}-{dead}.old"
    old.mkdir()
    (old / "v").write_text("1")
    assert fsutil.clean_stale_temporaries(str(target)) == []
    assert _names(tmp_path) == ["out"] and (target / "v").read_text() == "1"
