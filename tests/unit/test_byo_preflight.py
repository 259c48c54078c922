"""Bring your own model before any step runs: pre-flight checks and the user's files."""

from __future__ import annotations

import hashlib

import pytest

from tfopt.client import preflight, user_files
from tfopt.client.params import validate_params
from tfopt.errors import ConfigError


def check(local=False, **params):
    preflight.check_pipeline_params(validate_params(params), local=local)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"input_range": "0-255"}, "step import-model: ImportConfig.input_range='0-255'"),
        ({"model_output": "scores"}, "step import-model: ImportConfig.output='scores'"),
        ({"fine_tune_epochs": 2}, "fine_tune_epochs=2 is not allowed without model_uri"),
        ({"module_file": "model.txt"}, "step train: TrainConfig.module_file='model.txt'"),
    ],
)
def test_bad_values_fail_naming_the_step(params, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check(**params)


def test_local_files_are_checked_before_any_step(tmp_path):
    with pytest.raises(ConfigError, match=r"model_uri='.*absent': no such file or directory"):
        check(local=True, model_uri=str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"module_file=.*no such file"):
        check(local=True, module_file=str(tmp_path / "absent.py"))
    bad = tmp_path / "bad.py"
    bad.write_text("def build_model(h, s, n):\n    return (\n")
    with pytest.raises(ConfigError, match="syntax error at line 2"):
        check(local=True, module_file=str(bad))
    (tmp_path / "m").mkdir()
    # arch's shape rule does not apply to the user's own model
    check(local=True, model_uri=str(tmp_path / "m"), source="builtin:digits", arch="cnn")


def test_local_module_file_is_staged_under_the_pipeline_root(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def build_model(h, s, n):\n    pass\n")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    params = user_files.stage_module_file({"module_file": str(src), "epochs": 3}, str(tmp_path))
    assert params == {"module_file": str(tmp_path / "modules" / f"{sha}.py"), "epochs": 3}
    assert (tmp_path / "modules" / f"{sha}.py").read_bytes() == src.read_bytes()
    remote = {"module_file": "gs://b/m.py"}
    assert user_files.stage_module_file(remote, str(tmp_path)) is remote


def test_submitted_runs_refuse_local_paths():
    user_files.require_remote({"module_file": "gs://b/m.py", "model_uri": "gs://b/model"})
    user_files.require_remote({"module_file": "", "model_uri": ""})
    with pytest.raises(ConfigError, match=r"model_uri='/data/model' is a local path.*gs://"):
        user_files.require_remote({"model_uri": "/data/model"})
    with pytest.raises(ConfigError, match=r"module_file='m.py' is a local path"):
        user_files.require_remote({"module_file": "m.py"})
