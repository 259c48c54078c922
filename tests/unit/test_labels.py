"""Labels must be class ids: a continuous target or a stray label id fails ingest by name."""

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris

from tfopt.data import ingest as ingest_lib
from tfopt.errors import DataError


def write_csv(path, x, y):
    cols = [f"f{i}" for i in range(x.shape[1])]
    lines = [",".join([*cols, "label"])]
    lines += [
        ",".join([*(f"{v:.6g}" for v in row), str(int(t))]) for row, t in zip(x, y, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run(tmp_path, source, **kw):
    return ingest_lib.ingest(str(tmp_path / "ds"), ingest_lib.IngestConfig(source=source, **kw))


def test_continuous_target_is_rejected_unless_forced(tmp_path):
    x, y = load_diabetes(return_X_y=True)  # disease progression 25..346, 442 rows
    src = write_csv(tmp_path / "diabetes.csv", x, y)
    with pytest.raises(DataError) as err:
        run(tmp_path, src)
    msg = str(err.value)
    assert "diabetes.csv: the label looks like a continuous target" in msg
    assert "442 examples over 347 inferred classes (1.3 per class" in msg
    assert "tfopt trains classifiers" in msg and "force_classification=true" in msg
    assert not (tmp_path / "ds").exists()
    info = run(tmp_path, src, force_classification=True)
    assert info.num_classes == 347


def test_a_stray_label_names_the_file_and_line(tmp_path):
    x, y = load_iris(return_X_y=True)
    y = y.copy()
    y[40] = 7  # data line 41 = file line 42
    src = write_csv(tmp_path / "iris.csv", x, y)
    with pytest.raises(DataError) as err:
        run(tmp_path, src)
    assert f"{src}: line 42: label 7 makes 8 classes, but no example has class 3, 4, 5, 6" in str(
        err.value
    )
    # with num_classes given, the label is out of range, again by file and line
    with pytest.raises(DataError, match=r"iris.csv: line 42: label 7 is outside \[0, 3\)"):
        run(tmp_path, src, num_classes=3)
    assert not (tmp_path / "ds").exists()


def test_real_classification_data_passes(tmp_path):
    x, y = load_iris(return_X_y=True)
    info = run(tmp_path, write_csv(tmp_path / "iris.csv", x, y))
    assert info.num_classes == 3
    assert sum(info.counts.values()) == 150


def test_few_examples_per_class_is_the_boundary(tmp_path):
    # 4 classes x 5 examples = 20 = 5 per class: accepted; one class fewer examples: rejected
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 5)
    run(tmp_path, write_csv(tmp_path / "ok.csv", rng.normal(size=(20, 2)), y))
    with pytest.raises(DataError, match="19 examples over 4 inferred classes"):
        run(tmp_path / "b", write_csv(tmp_path / "few.csv", rng.normal(size=(19, 2)), y[1:]))
