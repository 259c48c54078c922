import json

import pytest

from tfopt.client import params
from tfopt.errors import ConfigError


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_yaml_and_json_files_give_typed_parameters(tmp_path):
    y = write(
        tmp_path,
        "p.yaml",
        "epochs: 3\nlearning_rate: 1\nxla: true\nsource: a.csv\nsubmit:\n  target: vertex\n",
    )
    j = write(
        tmp_path,
        "p.json",
        json.dumps({"epochs": 3, "learning_rate": 1, "xla": True, "source": "a.csv"}),
    )
    expected = {"epochs": 3, "learning_rate": 1.0, "xla": True, "source": "a.csv"}
    assert params.load_params(y) == expected  # 'submit' is routed elsewhere
    assert params.load_params(j) == expected
    assert isinstance(params.load_params(y)["learning_rate"], float)


def test_overrides_win_over_the_file(tmp_path):
    y = write(tmp_path, "p.yaml", "epochs: 3\n")
    assert params.load_params(y, overrides={"epochs": 5}) == {"epochs": 5}


def test_unknown_parameters_are_named_with_the_allowed_ones(tmp_path):
    y = write(tmp_path, "p.yaml", "epochz: 3\nbatchsize: 2\n")
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) batchsize, epochz.*allowed:"):
        params.load_params(y)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: three\n", "epochs='three' has type str; expected Integer"),
        ("epochs: 2.5\n", "expected Integer"),
        ("epochs: true\n", "expected Integer"),
        ("xla: 1\n", "expected Boolean"),
        ("learning_rate: fast\n", "expected Float"),
    ],
)
def test_wrong_types_are_rejected(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        params.load_params(write(tmp_path, "p.yaml", text))


def test_unparseable_or_non_mapping_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot parse"):
        params.load_params(write(tmp_path, "p.yaml", "a: [1\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        params.load_params(write(tmp_path, "p.yaml", "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="not found"):
        params.load_params(str(tmp_path / "missing.yaml"))


def test_a_preset_fills_what_the_file_and_set_do_not_give(tmp_path):
    from tfopt.client import presets

    real = presets.PRESETS["real"].params
    y = write(tmp_path, "p.yaml", "preset: real\nsearch_trials: 2\nepochs: 3\n")
    got = params.load_params(y)
    assert got == {**real, "search_trials": 2, "epochs": 3}  # the file wins over the preset
    assert got["search"] is True and got["search_budget_minutes"] == 10.0
    got = params.load_params(y, overrides={"search": False})  # --set wins over both
    assert got["search"] is False and got["search_trials"] == 2
    assert params.load_params(None, overrides={"preset": "real"}) == real  # --set preset=real
    assert params.validate_params({"preset": "real"}) == real  # run_local from Python too
    with pytest.raises(ConfigError, match=r"p2.yaml: preset='fast'; allowed: real$"):
        params.load_params(write(tmp_path, "p2.yaml", "preset: fast\n"))


def test_params_shows_the_defaults_a_preset_gives(capsys):
    from tfopt import cli

    assert cli.main(["params", "--preset", "real", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert (rows["search"]["default"], rows["search"]["preset"]) == (True, "real")
    assert rows["search_trials"]["default"] == 4 and "preset" not in rows["epochs"]
    assert cli.main(["params", "--preset", "real"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("preset real: Real data") and "true (preset real)" in out
    assert cli.main(["params"]) == 0
    assert "`tfopt params --preset NAME` shows what one sets" in capsys.readouterr().out
    assert cli.main(["params", "--preset", "fast"]) == 2
    assert "--preset: preset='fast'; allowed: real" in capsys.readouterr().err
