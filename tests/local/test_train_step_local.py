"""train_step (dsl.If/Elif/Else + OneOf + importer) runs under KFP's local runner."""

import os

import pytest
from kfp import dsl, local
from kfp.dsl import Input, Model

from tfopt.components.ingest import ingest
from tfopt.components.tune import tune
from tfopt.pipelines.train_step import train_step


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def model_summary(model: Input[Model]) -> str:
    import os

    return ",".join(sorted(os.listdir(model.path))) + "|" + str(model.metadata.get("target"))


@dsl.pipeline(name="train-step-local")
def wrapper(target: str = "local", replicas: int = 1) -> str:
    data = ingest()
    no_tuning = tune(dataset=data.outputs["dataset"], enabled=False)
    step = train_step(
        dataset=data.outputs["dataset"],
        hyperparameters=no_tuning.outputs["best_hyperparameters"],
        train_config={
            "arch": "mlp",
            "width": 8,
            "depth": 1,
            "epochs": 2,
            "early_stopping_patience": 0,
        },
        target=target,
        replicas=replicas,
    )
    return model_summary(model=step.output).output


@pytest.mark.slow
def test_train_step_local_target_and_bad_request(tmp_path):
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path),
        raise_on_error=True,
    )
    summary = wrapper().output
    files, target = summary.split("|")
    assert "saved_model.pb" in files.split(",") and target == "local"
    # A bad request fails in the check step, before any training task runs.
    with pytest.raises(RuntimeError, match="plan-training"):
        wrapper(replicas=2)
    runs = [d for d in os.listdir(tmp_path) if d.startswith("train-step-local")]
    assert len(runs) == 2
