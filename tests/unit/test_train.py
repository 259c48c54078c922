import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from tfopt.errors import ConfigError
from tfopt.evaluation import evaluate
from tfopt.training import models, train


def test_small_model_learns_digits(small_model_dir, digits_dir):
    result = evaluate.evaluate_model(
        small_model_dir, "saved_model", digits_dir, evaluate.EvalConfig(latency_iterations=5)
    )
    assert result["accuracy"] >= 0.9
    assert not os.path.exists(small_model_dir + ".backup")  # removed after success


def test_train_writes_metrics_tensorboard_and_stops_early(tmp_path, digits_dir):
    config = train.TrainConfig(
        model=models.ModelConfig(arch="mlp", width=16, depth=1),
        epochs=40,
        early_stopping_patience=1,
        learning_rate=0.05,
        optimizer="sgd",
    )
    result = train.train_model(
        digits_dir, str(tmp_path / "m"), config, tensorboard_dir=str(tmp_path / "tb")
    )
    assert result.epochs_run < 40  # early stopping ended it
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(result.metrics)
    assert result.metrics["examples_per_second"] > 0
    assert result.params == models.count_params(models.load_model(str(tmp_path / "m")))
    assert glob.glob(str(tmp_path / "tb" / "**" / "events.out.tfevents.*"), recursive=True)
    assert (result.strategy, result.replicas) == ("_DefaultDistributionStrategy", 1)


_KILLABLE = """
import sys
from tfopt.training import models, train
cfg = train.TrainConfig(model=models.ModelConfig(arch="mlp", width=16, depth=1), epochs=30,
                        early_stopping_patience=0, batch_size=16)
train.train_model(sys.argv[1], sys.argv[2], cfg, backup_dir=sys.argv[3])
"""


@pytest.mark.slow
def test_killed_training_resumes_from_backup(tmp_path, digits_dir):
    backup = tmp_path / "backup"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLABLE, digits_dir, str(tmp_path / "m"), str(backup)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # the `checkpoint` state file is written after the checkpoint's data and index: only then
    # can a restore find it (killing on the index alone raced with that write under load)
    deadline = time.time() + 120
    while time.time() < deadline and not glob.glob(
        str(backup / "**" / "checkpoint"), recursive=True
    ):
        time.sleep(0.05)
    # kill at once: an epoch takes ~0.1 s on an idle machine, and a finished run deletes its backup
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert glob.glob(str(backup / "**" / "*.index"), recursive=True), "no checkpoint written"
    assert not (tmp_path / "m").exists()  # nothing half-written where the model goes
    cfg = train.TrainConfig(
        model=models.ModelConfig(arch="mlp", width=16, depth=1),
        epochs=30,
        early_stopping_patience=0,
        batch_size=16,
    )
    result = train.train_model(digits_dir, str(tmp_path / "m"), cfg, backup_dir=str(backup))
    assert result.epochs_run < 30  # resumed: only the remaining epochs ran
    assert (tmp_path / "m" / "saved_model.pb").exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"optimizer": "adagrad"}, "TrainConfig.optimizer"),
        ({"learning_rate": 0.0}, "TrainConfig.learning_rate"),
        ({"epochs": 0}, "TrainConfig.epochs"),
        ({"batch_size": 0}, "TrainConfig.batch_size"),
        ({"precision": "fp8"}, "TrainConfig.precision"),
        ({"profile_batches": "5,2"}, "TrainConfig.profile_batches"),
        ({"profile_batches": "x"}, "TrainConfig.profile_batches"),
    ],
)
def test_train_config_rejects_bad_values(changes, message):
    with pytest.raises(ConfigError, match=message):
        train.TrainConfig(**changes)


def test_model_that_does_not_fit_the_data_is_rejected_before_training(tmp_path, digits_dir):
    wrong = models.build_model(models.ModelConfig(arch="mlp", width=8, depth=1), (8, 8, 1), 3)
    with pytest.raises(Exception, match="3 outputs but the dataset has 10"):
        train.train_model(digits_dir, str(tmp_path / "m"), train.TrainConfig(epochs=1), model=wrong)
    assert not (tmp_path / "m").exists()
