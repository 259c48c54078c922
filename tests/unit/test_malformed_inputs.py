"""Hostile inputs: generated malformed params, corrupted SavedModels and TFLite files,
path traversal in names used for files, enormous values."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tfopt.client import params
from tfopt.compression import tflite as tflite_lib
from tfopt.deploy.serving import deploy, repository, server
from tfopt.errors import ConfigError, ModelError, TfoptError
from tfopt.evaluation.runtime import Predictor
from tfopt.training import models

SPECS = params.pipeline_inputs()
_TYPES = {"String": str, "Integer": int, "Float": (float, int), "Boolean": bool}

_value = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=6)
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
_key = (
    st.sampled_from(sorted(SPECS))
    | st.text(max_size=12)
    | st.sampled_from(["submit", "schedule", "../epochs", "EPOCHS", "epochs "])
)


@settings(max_examples=300, deadline=None)
@given(values=st.dictionaries(_key, _value, max_size=6))
def test_generated_params_are_valid_or_rejected_with_a_config_error(values):
    try:
        out = params.validate_params(values)
    except ConfigError as exc:
        bad = [k for k in values if k not in SPECS and k not in params.RESERVED_SECTIONS]
        assert any(k in str(exc) for k in bad) if bad else "expected" in str(exc)
        return
    for k, v in out.items():  # accepted: every name known, every value of its type
        spec_type = SPECS[k].type
        if spec_type in _TYPES:
            assert isinstance(v, _TYPES[spec_type])
            assert isinstance(v, bool) == (spec_type == "Boolean")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(max_size=200)
    | st.sampled_from(
        [
            "epochs: [1, 2]",
            "- 1\n- 2",
            "epochs: !!python/object:os.system x",
            "{",
            "epochs: 1e999",
            "a: &a [*a]",
            "epochs: 3\nbogus_key: 1",
        ]
    )
)
def test_generated_params_files_never_escape_as_tracebacks(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    try:
        params.load_params(str(path))
    except ConfigError as exc:
        assert str(path) in str(exc)


def test_params_with_non_string_keys_get_a_config_error():
    with pytest.raises(ConfigError):
        params.validate_params({1: 2, "epochs": 3})


# ----------------------------------------------------------- corrupted models
@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile_models")
    m = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 10)
    path = models.save_model(m, str(root / "good"))
    tfl = str(root / "good.tflite")
    tflite_lib.convert_to_tflite(path, None, tfl, tflite_lib.TFLiteConfig(mode="float32"))
    return {"dir": path, "tflite": tfl, "root": root}


def _corrupt_copy(src: str, dst: str, rel: str, how: str) -> str:
    shutil.copytree(src, dst)
    f = os.path.join(dst, rel)
    raw = bytearray(Path(f).read_bytes())
    if how == "truncate":
        raw = raw[: len(raw) // 2]
    elif rel == "saved_model.pb":
        # A protobuf has no checksum, and a flip inside a string or a number parses: its
        # outcome would depend on where the flips land in this build's graph. Flip three
        # bits of the first tag (field 1, varint: 0x08) into wire type 7, which no
        # parser accepts, so the outcome is decided: a clear error.
        assert raw[0] == 0x08, raw[:4]
        raw[0] ^= 0x07
    else:  # flip one bit in each of 8 spread-out bytes (every variable has a checksum)
        for i in range(8):
            raw[(len(raw) * (2 * i + 1)) // 16] ^= 0x10
    with open(f, "wb") as fh:
        fh.write(bytes(raw))
    return dst


def _data_file(path: str) -> str:
    return next(
        os.path.join("variables", f)
        for f in os.listdir(os.path.join(path, "variables"))
        if f.startswith("variables.data")
    )


@pytest.mark.parametrize("part", ["saved_model.pb", "variables.data", "variables.index"])
@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_corrupted_savedmodel_gets_clear_errors_and_push_leaves_nothing(saved, tmp_path, part, how):
    rel = {
        "saved_model.pb": "saved_model.pb",
        "variables.index": "variables/variables.index",
        "variables.data": _data_file(saved["dir"]),
    }[part]
    bad = _corrupt_copy(saved["dir"], str(tmp_path / "bad"), rel, how)
    base = tmp_path / "repo"
    outcomes = {}
    for name, call in (
        ("push", lambda: repository.push_model(bad, str(base), "digits")),
        ("load_model", lambda: models.load_model(bad)),
        (
            "predictor",
            lambda: Predictor(bad, "saved_model").predict(np.zeros((2, 8, 8, 1), np.float32)),
        ),
    ):
        try:
            call()
            outcomes[name] = "loaded"
        except TfoptError as exc:
            assert bad in str(exc)
            outcomes[name] = "error"
    # The graph must parse and every variable's checksum must match: pushing and both
    # loaders refuse each damaged copy with an error naming it, and push writes nothing.
    assert outcomes == {"push": "error", "load_model": "error", "predictor": "error"}
    assert not base.exists() or os.listdir(base / "digits") == []


_TFLITE_CHECK = """
    import json, sys
    import numpy as np
    from tfopt.errors import TfoptError
    from tfopt.evaluation.runtime import Predictor
    for path in sys.argv[1:]:
        try:
            p = Predictor(path, "tflite")
            out = p.predict(np.zeros((2, 8, 8, 1), np.float32))
            print(json.dumps({"outcome": "loaded", "shape": list(out.shape)}), flush=True)
        except TfoptError as exc:
            print(json.dumps({"outcome": "error", "msg": str(exc)}), flush=True)
    """


def test_corrupted_tflite_gets_a_clear_error_in_predictor(saved, tmp_path):
    good = Path(saved["tflite"]).read_bytes()
    flipped = bytearray(good)
    flipped[0] ^= 0x40  # the flatbuffer's root offset
    flipped[5] ^= 0x01  # and its file identifier
    corrupt = {
        "truncate": good[: len(good) // 3],
        "flip": bytes(flipped),
        "empty": b"",
        "garbage": np.random.default_rng(0).bytes(4096),
    }
    paths = []
    for how, raw in corrupt.items():
        (tmp_path / f"{how}.tflite").write_bytes(raw)
        paths.append(str(tmp_path / f"{how}.tflite"))
    # In a subprocess: a corrupt flatbuffer must not take the test runner down with it.
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_TFLITE_CHECK), *paths],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert len(results) == len(paths)
    for path, result in zip(paths, results, strict=True):
        assert result["outcome"] == "error" and path in result["msg"], (path, result)


# ------------------------------------------------- traversal and enormous values
@pytest.mark.parametrize("name", ["../evil", "a/../../b", "..", ".x", "a\\b", "x" * 200, ""])
def test_names_used_for_files_reject_traversal(saved, tmp_path, name):
    with pytest.raises(ModelError, match="not allowed"):
        repository.check_model_name(name)
    with pytest.raises(ConfigError, match="model_name"):
        deploy.DeployConfig(model_name=name)
    with pytest.raises(ModelError):
        repository.push_model(saved["dir"], str(tmp_path / "repo"), name)
    assert sorted(os.listdir(tmp_path)) in ([], ["repo"])
    if (tmp_path / "repo").exists():
        assert os.listdir(tmp_path / "repo") in ([], [repository.LOCK_FILE])


def test_enormous_values_are_rejected_by_configs_and_servers(tmp_path):
    from tfopt.data import ingest
    from tfopt.training import train

    for kw in ({"epochs": 10**9}, {"batch_size": 10**12}, {"learning_rate": 1e30}):
        with pytest.raises(ConfigError, match=next(iter(kw))):
            train.TrainConfig(**kw)
    with pytest.raises(ConfigError, match="synthetic_examples"):
        ingest.IngestConfig(source="builtin:synthetic", synthetic_examples=10**12)
    with pytest.raises(ConfigError, match="max_request_bytes"):
        server.ModelServer(str(tmp_path), "digits", max_request_bytes=1 << 40)
    with pytest.raises(ConfigError, match="max_load_retries"):
        server.ModelServer(str(tmp_path), "digits", max_load_retries=10**9)
    with pytest.raises(ConfigError, match="smoke_examples"):
        deploy.DeployConfig(smoke_examples=10**9)
