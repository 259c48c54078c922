import json
from pathlib import Path

import pytest

from tfopt import fsutil


def test_atomic_dir_failure_leaves_previous_content_and_no_temp(tmp_path):
    target = tmp_path / "artifact"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), fsutil.atomic_dir(str(target)) as tmp:
        (tmp_path / "x").write_text("")
        Path(tmp, "new.txt").write_text("half")
        raise RuntimeError("killed mid-write")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact", "x"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]


def test_atomic_dir_replaces_existing_only_on_success(tmp_path):
    target = tmp_path / "artifact"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with fsutil.atomic_dir(str(target)) as tmp:
        Path(tmp, "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]


def test_atomic_file_keeps_old_file_on_error(tmp_path):
    path = tmp_path / "summary.json"
    fsutil.write_json(str(path), {"v": 1})
    with pytest.raises(TypeError):
        fsutil.write_json(str(path), {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_sizes_of_file_and_directory(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"a" * 1000)
    (tmp_path / "d" / "b").write_bytes(b"b" * 500)
    assert fsutil.size_bytes(str(tmp_path / "d")) == 1500
    assert 0 < fsutil.gzip_bytes(str(tmp_path / "d")) < 100
