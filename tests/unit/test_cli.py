import pytest
import yaml

from tfopt import cli
from tfopt.cli.pipeline import parse_set
from tfopt.errors import ConfigError


def test_compile_writes_every_pipeline(tmp_path, capsys):
    assert cli.main(["compile", "--output-dir", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.split()
    assert str(tmp_path / "optimize.yaml") in printed
    spec = next(yaml.safe_load_all((tmp_path / "optimize.yaml").read_text()))
    assert spec["pipelineInfo"]["name"] == "tfopt-optimize"


def test_run_rejects_unknown_parameter_before_any_work(tmp_path, capsys):
    params = tmp_path / "p.yaml"
    params.write_text("epochz: 3\n")
    code = cli.main(["run", "--params", str(params), "--output-dir", str(tmp_path / "out")])
    assert code == 2
    assert "unknown parameter(s) epochz" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_parse_set_reads_yaml_scalars():
    assert parse_set(["epochs=5", "xla=true", "source=a.csv", "learning_rate=0.1"]) == {
        "epochs": 5,
        "xla": True,
        "source": "a.csv",
        "learning_rate": 0.1,
    }
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        parse_set(["epochs"])
