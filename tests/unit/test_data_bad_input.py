"""Bad data fails with a message naming the file and the line/row/record, and writes nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tfopt.data import ingest as ingest_lib
from tfopt.data import input_pipeline, readers, schema
from tfopt.errors import DataError

from helpers.data import listing, toy_arrays, write_csv, write_foreign_tfrecord

HEADER = "label,a,b,c\n"


def _csv(tmp_path, body: str, name="bad.csv") -> str:
    path = tmp_path / name
    path.write_text(HEADER + body)
    return str(path)


def _good_rows(n=30):
    return "".join(f"{i % 3},{i},{i + 1},{i + 2}\n" for i in range(n))


def _case(tmp_path, name):
    """(IngestConfig, regex the message must match) for each bad input."""
    x, y = toy_arrays(40, shape=(4,))
    if name == "missing file":
        path = str(tmp_path / "nope.csv")
        return ingest_lib.IngestConfig(source=path), r"nope\.csv: file not found"
    if name == "empty csv":
        (tmp_path / "empty.csv").write_text("")
        return ingest_lib.IngestConfig(
            source=str(tmp_path / "empty.csv")
        ), r"empty\.csv: file is empty"
    if name == "empty npz":
        (tmp_path / "empty.npz").write_bytes(b"")
        return ingest_lib.IngestConfig(
            source=str(tmp_path / "empty.npz")
        ), r"empty\.npz: file is empty"
    if name == "csv wrong column count":
        path = _csv(tmp_path, _good_rows(10) + "1,2,3\n" + _good_rows(5))
        return ingest_lib.IngestConfig(
            source=path
        ), r"bad\.csv: line 12 has 3 columns; the header has 4"
    if name == "csv non-numeric":
        path = _csv(tmp_path, _good_rows(6) + "1,2,abc,4\n")
        return ingest_lib.IngestConfig(
            source=path
        ), r"bad\.csv: line 8: feature column 'b' has 'abc'"
    if name == "csv NaN":
        path = _csv(tmp_path, _good_rows(4) + "1,2,nan,4\n" + _good_rows(3))
        return ingest_lib.IngestConfig(source=path), r"bad\.csv: line 6: features contain NaN"
    if name == "csv label out of range":
        path = _csv(tmp_path, _good_rows(9) + "12,1,2,3\n")
        return (
            ingest_lib.IngestConfig(source=path, num_classes=3),
            r"bad\.csv: line 11: label 12 is outside \[0, 3\)",
        )
    if name == "csv negative label":
        path = _csv(tmp_path, _good_rows(2) + "-1,1,2,3\n")
        return ingest_lib.IngestConfig(source=path), r"bad\.csv: line 4: label -1 is negative"
    if name == "csv fractional label":
        path = _csv(tmp_path, _good_rows(2) + "1.5,1,2,3\n")
        return ingest_lib.IngestConfig(source=path), r"bad\.csv: line 4: label 1\.5 is not a whole"
    if name == "npz NaN":
        x[7, 2] = np.nan
        np.savez(tmp_path / "nan.npz", x=x, y=y)
        return (
            ingest_lib.IngestConfig(source=str(tmp_path / "nan.npz")),
            r"nan\.npz: x row 7: features contain NaN",
        )
    if name == "npz strings":
        np.savez(tmp_path / "s.npz", x=np.array([["a", "b"]] * 20), y=np.arange(20) % 2)
        return ingest_lib.IngestConfig(
            source=str(tmp_path / "s.npz")
        ), r"s\.npz: x rows 0-19: .*dtype"
    if name == "npz shape mismatch":
        np.savez(tmp_path / "m.npz", x_train=x, y_train=y, x_test=x[:, :3], y_test=y)
        return (
            ingest_lib.IngestConfig(source=str(tmp_path / "m.npz")),
            r"m\.npz: x_test rows 0-39: examples have shape \(3,\)",
        )
    if name == "npz one-hot labels":
        np.savez(tmp_path / "o.npz", x=x, y=np.eye(4)[y])
        return ingest_lib.IngestConfig(
            source=str(tmp_path / "o.npz")
        ), r"o\.npz: y has shape \(40, 4\)"
    if name == "npz label out of range":
        y[13] = 9
        np.savez(tmp_path / "r.npz", x=x, y=y)
        return (
            ingest_lib.IngestConfig(source=str(tmp_path / "r.npz"), num_classes=4),
            r"r\.npz: y row 13|r\.npz: x row 13: label 9 is outside \[0, 4\)",
        )
    if name == "tfrecord truncated":
        path = write_foreign_tfrecord(tmp_path / "t.tfrecord", x, y)
        raw = Path(path).read_bytes()
        Path(path).write_bytes(raw[:-7])
        return (
            ingest_lib.IngestConfig(source=path, feature_column="pixels", label_column="digit"),
            r"t\.tfrecord: record 39 is corrupt or truncated",
        )
    if name == "tfrecord shape mismatch":
        a = write_foreign_tfrecord(tmp_path / "a.tfrecord", x, y)
        b = write_foreign_tfrecord(tmp_path / "b.tfrecord", x[:5, :3], y[:5])
        return (
            ingest_lib.IngestConfig(
                source=f"{a},{b}", feature_column="pixels", label_column="digit"
            ),
            r"b\.tfrecord: record 0: feature 'pixels' has 3 values; earlier records have 4",
        )
    if name == "tfrecord missing feature":
        path = write_foreign_tfrecord(tmp_path / "f.tfrecord", x, y)
        return ingest_lib.IngestConfig(source=path), r"f\.tfrecord: record 0: needs features 'x'"
    if name == "shard missing from set":
        for i in (0, 2):
            write_foreign_tfrecord(tmp_path / f"part-{i:05d}-of-00003.tfrecord", x, y)
        return (
            ingest_lib.IngestConfig(
                source=str(tmp_path / "part-*"), feature_column="pixels", label_column="digit"
            ),
            r"shard set of 3 is incomplete; missing part-00001-of-00003\.tfrecord",
        )
    if name == "listed file missing":
        a = write_foreign_tfrecord(tmp_path / "a.tfrecord", x, y)
        return (
            ingest_lib.IngestConfig(
                source=f"{a},{tmp_path}/gone.tfrecord",
                feature_column="pixels",
                label_column="digit",
            ),
            r"gone\.tfrecord: file not found \(listed in the source",
        )
    if name == "single class":
        path = _csv(tmp_path, "".join(f"0,{i},1,2\n" for i in range(20)))
        return ingest_lib.IngestConfig(source=path), r"single class"
    raise AssertionError(name)


CASES = [
    "missing file",
    "empty csv",
    "empty npz",
    "csv wrong column count",
    "csv non-numeric",
    "csv NaN",
    "csv label out of range",
    "csv negative label",
    "csv fractional label",
    "npz NaN",
    "npz strings",
    "npz shape mismatch",
    "npz one-hot labels",
    "npz label out of range",
    "tfrecord truncated",
    "tfrecord shape mismatch",
    "tfrecord missing feature",
    "shard missing from set",
    "listed file missing",
    "single class",
]


@pytest.mark.parametrize("name", CASES)
def test_bad_input_names_the_problem_and_writes_nothing(tmp_path, name):
    src = tmp_path / "src"
    src.mkdir()
    config, pattern = _case(src, name)
    out = tmp_path / "out" / "dataset"
    with pytest.raises(DataError, match=pattern):
        ingest_lib.ingest(str(out), config)
    assert not out.exists()
    assert listing(out.parent) == [] if out.parent.exists() else True  # no temp leftovers

    # an existing artifact at the output path is left exactly as it was
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "schema.json").write_text('{"keep": true}')
    with pytest.raises(DataError, match=pattern):
        ingest_lib.ingest(str(existing), config)
    assert listing(existing) == ["schema.json"]
    assert (existing / "schema.json").read_text() == '{"keep": true}'
    assert listing(tmp_path) == ["existing", "out", "src"] or listing(tmp_path) == [
        "existing",
        "src",
    ]


def test_csv_error_in_a_later_chunk_names_the_line(tmp_path, monkeypatch):

    monkeypatch.setattr(readers, "CHUNK_ROWS", 16)
    x, y = toy_arrays(100, shape=(3,))
    path = write_csv(tmp_path / "big.csv", x, y)
    lines = Path(path).read_text().splitlines(keepends=True)
    lines[70] = lines[70].rstrip("\n") + ",5\n"  # line 71 gets an extra column
    Path(path).write_text("".join(lines))
    with pytest.raises(DataError, match=r"big\.csv: line 71 has 5 columns; the header has 4"):
        ingest_lib.ingest(str(tmp_path / "out"), ingest_lib.IngestConfig(source=path))
    assert not (tmp_path / "out").exists()


def test_load_info_names_a_missing_shard(tmp_path):
    info = ingest_lib.ingest(
        str(tmp_path / "d"),
        ingest_lib.IngestConfig(
            source="builtin:synthetic",
            synthetic_examples=300,
            synthetic_shape=(2, 2, 1),
            shard_size=50,
        ),
    )
    victim = info.shards["train"][1]
    os.remove(os.path.join(info.path, victim))
    with pytest.raises(DataError, match=rf"shard {victim} of split 'train' is listed"):
        schema.load_info(info.path)
    shutil.rmtree(info.path)
    with pytest.raises(DataError, match="not a tfopt dataset"):
        schema.load_info(info.path)


def test_a_dataset_damaged_after_ingest_names_the_shard(tmp_path):
    """A bit flip in a shard (CRC mismatch) is a DataError naming that shard, in every
    reader: training, evaluation and NumPy streaming, instead of TensorFlow's bare
    'corrupted record at N'."""
    from tfopt.evaluation import evaluate
    from tfopt.training import models, train

    ds = str(tmp_path / "digits")
    info = ingest_lib.ingest(ds, ingest_lib.IngestConfig())
    model = models.save_model(
        models.build_model(
            models.ModelConfig(arch="mlp", width=4, depth=1), info.feature_shape, info.num_classes
        ),
        str(tmp_path / "m"),
    )
    for split in ("train", "test"):
        shard = info.files(split)[0]
        content = bytearray(Path(shard).read_bytes())
        content[len(content) // 2] ^= 0xFF
        Path(shard).write_bytes(content)
    message = r"train-00000-of-00001\.tfrecord: the dataset is damaged \(corrupted record at \d+\)"
    with pytest.raises(DataError, match=message + ".*run ingest again"):
        train.train_model(ds, str(tmp_path / "out"), train.TrainConfig(epochs=1))
    assert not os.path.exists(tmp_path / "out")
    with pytest.raises(DataError, match=r"test-00000-of-00001\.tfrecord: the dataset is damaged"):
        evaluate.evaluate_model(model, "saved_model", ds, evaluate.EvalConfig(latency_iterations=1))
    with pytest.raises(DataError, match=message):
        list(input_pipeline.iter_arrays(schema.load_info(ds), "train"))
