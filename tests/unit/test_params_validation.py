"""Every pipeline parameter is checked before any step runs, by the steps' own config classes."""

import pytest

from tfopt.cli import main
from tfopt.client import preflight
from tfopt.client.params import load_params, read_params_file, validate_params
from tfopt.errors import ConfigError, DataError


def check(local=False, **params):
    preflight.check_pipeline_params(validate_params(params), local=local)


def test_the_defaults_pass():
    check()
    check(local=True)  # builtin:digits, arch cnn


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"objective": "banana"}, "step select: SelectionPolicy.objective='banana'"),
        ({"epochs": -1}, "step train: TrainConfig.epochs=-1"),
        ({"arch": "resnet"}, "step train: ModelConfig.arch='resnet'"),
        ({"arch": "resnet50", "alpha": 0.5}, "ModelConfig.alpha=0.5 is not allowed for arch"),
        ({"target_sparsity": 1.5}, "step prune: PruneConfig.target_sparsity=1.5"),
        # a disabled technique's parameters are still checked
        (
            {"enable_pruning": False, "target_sparsity": 1.5},
            "step prune: PruneConfig.target_sparsity=1.5",
        ),
        ({"enable_tuning": False, "tune_algorithm": "x"}, "step tune: TuneConfig.algorithm='x'"),
        ({"lowrank_energy": 2.0}, "step lowrank: LowRankConfig.energy=2.0"),
        ({"distill_temperature": 0.0}, "step distill: DistillConfig.temperature=0.0"),
        ({"test_fraction": 0.9}, "step ingest: IngestConfig.test_fraction=0.9"),
        ({"num_classes": -3}, "step ingest: IngestConfig.num_classes=-3"),
        ({"min_accuracy": 2.0}, "step select: SelectionPolicy.min_accuracy=2.0"),
        ({"serving_variant": "tpu"}, "step deploy: deploy.serving_variant='tpu'"),
        ({"deploy_target": "vertex"}, "deploy_target='vertex' needs project and region"),
        ({"training_target": "moon"}, "step train: "),
    ],
)
def test_bad_values_fail_naming_the_step_and_field(params, message):
    with pytest.raises(ConfigError) as err:
        check(**params)
    assert message in str(err.value)


def test_arch_that_cannot_take_the_data_shape_fails_before_any_work(tmp_path):
    csv = tmp_path / "flat.csv"
    csv.write_text("a,b,c,label\n" + "1,2,3,0\n4,5,6,1\n" * 20)
    with pytest.raises(
        ConfigError, match=r"arch='cnn' needs image inputs .* shape \(3,\); use arch=mlp"
    ):
        check(local=True, source=str(csv))
    check(local=True, source=str(csv), arch="mlp")
    check(local=True, source=str(csv), feature_shape="3,1,1")
    check(local=False, source=str(csv))  # submitted runs read the source in the cluster


def test_a_missing_local_source_fails(tmp_path):
    with pytest.raises(ConfigError, match="no such file or directory"):
        check(local=True, source=str(tmp_path / "nope.csv"))


def test_binary_csv_source_names_the_file(tmp_path):
    csv = tmp_path / "data.csv"
    csv.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01" * 10)
    with pytest.raises(DataError, match=r"data.csv: not a text CSV file"):
        check(local=True, source=str(csv), arch="mlp")


def test_params_file_problems_name_the_file(tmp_path):
    binary = tmp_path / "p.yaml"
    binary.write_bytes(b"\xff\xfe\x00binary\x00")
    with pytest.raises(ConfigError, match=r"p.yaml: not a text params file"):
        read_params_file(str(binary))
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    with pytest.raises(ConfigError, match=r"empty.yaml: the params file is empty"):
        read_params_file(str(empty))
    dup = tmp_path / "dup.yaml"
    dup.write_text("epochs: 3\nseed: 1\nepochs: 5\n")
    with pytest.raises(ConfigError, match=r"dup.yaml: line 3: parameter 'epochs' is given twice"):
        read_params_file(str(dup))
    dup_json = tmp_path / "dup.json"
    dup_json.write_text('{"epochs": 3, "epochs": 5}')
    with pytest.raises(ConfigError, match=r"dup.json: parameter 'epochs' is given twice"):
        read_params_file(str(dup_json))


def test_load_params_checks_values_for_submit_too(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("epochs: 0\nsubmit:\n  target: vertex\n")
    with pytest.raises(ConfigError, match="step train: TrainConfig.epochs=0"):
        load_params(str(path))


def test_tfopt_run_fails_in_seconds_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["run", "--set", "objective=banana", "--output-dir", str(out)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("tfopt run: error: step select: SelectionPolicy.objective='banana'")
    assert not out.exists()


def test_tfopt_params_lists_every_parameter_with_what_is_allowed(capsys):
    from tfopt.client.params import pipeline_inputs

    rows = {r["name"]: r for r in preflight.describe_params()}
    assert set(rows) == set(pipeline_inputs())
    assert rows["objective"]["allowed"] == "one of 'smallest', 'fastest', 'most_accurate'"
    assert rows["epochs"] == {
        "name": "epochs",
        "type": "Integer",
        "default": 20,
        "allowed": "an integer in [1, 100000]",
    }
    assert rows["target_sparsity"]["allowed"] == "a number in [0.0, 1.0)"
    assert rows["max_size_bytes"]["allowed"] == "an integer >= 0"
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "min_accuracy" in out and "num_classes" in out
