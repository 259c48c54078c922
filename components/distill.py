"""Distill component: teacher SavedModel -> student SavedModel + metrics (vs scratch)."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components._image import COMPONENT_KWARGS


@dsl.component(**COMPONENT_KWARGS)
def distill(
    model: Input[Model],
    dataset: Input[Dataset],
    student_model: Output[Model],
    metrics: Output[Metrics],
    tensorboard: Output[Artifact],
    variant: str = "distilled",
    student_arch: str = "cnn",
    student_width: int = 8,
    student_depth: int = 2,
    student_dropout: float = 0.0,
    temperature: float = 4.0,
    alpha: float = 0.1,
    labelled_fraction: float = 1.0,
    unlabeled: str = "",
    augment: bool = False,
    epochs: int = 20,
    batch_size: int = 64,
    learning_rate: float = 0.003,
    seed: int = 42,
    train_scratch: bool = True,
    enabled: bool = True,
):
    """Distil ``model`` (the teacher) into a small student; also train it from scratch."""
    from tfopt.components import _util

    if _util.skip_if_disabled(student_model, variant, enabled, model, also=(metrics, tensorboard)):
        return
    from tfopt.compression import distill as distill_lib
    from tfopt.training import models

    config = distill_lib.DistillConfig(
        student=models.ModelConfig(
            arch=student_arch, width=student_width, depth=student_depth, dropout=student_dropout
        ),
        temperature=temperature,
        alpha=alpha,
        labelled_fraction=labelled_fraction,
        unlabeled=unlabeled,
        augment=augment,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        train_scratch=train_scratch,
    )
    with _util.skip_when_not_applicable(
        student_model, variant, "saved_model", also=(metrics, tensorboard)
    ):
        result = distill_lib.distill_model(
            model.path, dataset.path, student_model.path, config, tensorboard_dir=tensorboard.path
        )
        _util.log_metrics(metrics, result.to_dict())
        _util.describe_model(
            student_model,
            variant,
            "saved_model",
            base=model,
            params=result.student_params,
            sparsity=0.0,
            scratch_accuracy=result.scratch_accuracy,
            notes=result.notes,
        )
