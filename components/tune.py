"""Tune component: Keras Tuner search -> best hyperparameters (JSON) + metrics + trial table."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Metrics, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.training.train import TrainConfig
from tfopt.training.tune import TuneConfig


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(TuneConfig, TrainConfig)
def tune(
    dataset: Input[Dataset],
    best_hyperparameters: Output[Artifact],
    metrics: Output[Metrics],
    report: Output[Markdown],
    tensorboard: Output[Artifact],
    search_space: dict = None,
    algorithm: str = "random",
    max_trials: int = 6,
    objective: str = "val_accuracy",
    epochs: int = 10,
    early_stopping_patience: int = 3,
    optimizer: str = "adam",
    seed: int = 42,
    hyperband_factor: int = 3,
    work_dir: str = "",
    enabled: bool = True,
):
    """Search hyperparameters; ``work_dir`` (e.g. gs://...) makes the search resumable.

    Disabled, it runs as a no-op whose output the train step ignores.

    Args:
        best_hyperparameters: The best trial's hyperparameters (JSON).
        metrics: The search's figures (best score, trials run).
        report: Every trial with its hyperparameters and score (Markdown).
        tensorboard: TensorBoard logs of the trials.
        search_space: The search space: name -> a list of values or a {min, max, step,
            sampling} range (docs/observability.md); None = the built-in space.
        epochs: Most epochs of each trial (Hyperband's max_epochs); early stopping may
            end a trial sooner.
        work_dir: Where the search keeps its trials (e.g. gs://...), so that a rerun
            resumes it; '' = a temporary directory.
        enabled: False: skip the search (a no-op step; training uses its own settings).
    """
    from tfopt.components import _util

    if not enabled:
        _util.mark_skipped(
            best_hyperparameters,
            (metrics, report, tensorboard),
            skip_reason="disabled by pipeline parameter",
        )
        return
    import shutil
    import tempfile

    from tfopt import fsutil
    from tfopt.training import train as train_lib
    from tfopt.training import tune as tune_lib

    config = tune_lib.TuneConfig(
        algorithm=algorithm,
        max_trials=max_trials,
        objective=objective,
        search_space=tune_lib.DEFAULT_SEARCH_SPACE if search_space is None else search_space,
        base=train_lib.TrainConfig(
            epochs=epochs,
            early_stopping_patience=early_stopping_patience,
            optimizer=optimizer,
            seed=seed,
        ),
        hyperband_factor=hyperband_factor,
    )
    out = work_dir or tempfile.mkdtemp(prefix="tfopt-tune-")
    try:
        result = tune_lib.tune(dataset.path, out, config, tensorboard_dir=tensorboard.path)
    finally:
        if not work_dir:
            shutil.rmtree(out, ignore_errors=True)
    fsutil.write_json(best_hyperparameters.path, result.best_hyperparameters)
    with fsutil.atomic_file(report.path) as fh:
        fh.write(result.to_markdown())
    _util.log_metrics(metrics, result.metrics())
    best_hyperparameters.metadata.update(
        {
            "objective": result.objective,
            "score": result.best_score,
            "trial_id": result.best_trial_id,
            **result.best_hyperparameters,
        }
    )
