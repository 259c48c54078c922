"""Import-model component: a user's trained model (model_uri) -> tfopt's SavedModel hand-off.

Replaces training when the optimize pipeline's ``model_uri`` is set. Returns the model's
URI (``train_step`` turns the chosen branch's URI into its ``Model`` output).
"""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Metrics, Model, Output

from tfopt.components import _describe
from tfopt.components._image import COMPONENT_KWARGS
from tfopt.training.imported import ImportConfig


@dsl.component(**COMPONENT_KWARGS)
@_describe.inputs(ImportConfig, rename={"model_output": "output"})
def import_model(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    inspect: Output[Artifact],
    model_uri: str,
    train_config: dict = {},  # noqa: B006 - TrainConfig fields, flat (fine-tuning, module_file)
    fine_tune_epochs: int = 0,
    input_range: str = "auto",
    model_output: str = "auto",
) -> str:
    """Check ``model_uri`` against the dataset, wrap it (input adapter, softmax) and save it.

    Args:
        model: The imported model in tfopt's hand-off format (SavedModel).
        metrics: Its figures on the dataset, and its parameter count.
        inspect: The pre-flight report of the imported model (JSON).
        model_uri: Your trained model instead of training one: a tf_keras SavedModel
            directory, a .keras or .h5 file, or a plain SavedModel (local or gs://).
    """
    from tfopt.components import _util
    from tfopt.training import imported

    train = _util.train_config(None, train_config)
    config = imported.ImportConfig(
        input_range=input_range,
        output=model_output,
        fine_tune_epochs=fine_tune_epochs,
        module_file=train.module_file,
        train=train,
    )
    result = imported.import_model(model_uri, dataset.path, model.path, config)
    _util.write_inspect(inspect, model.path)
    _util.log_metrics(metrics, {**result.metrics, "params": result.params})
    model.metadata.update(
        {
            "variant": "baseline",
            "format": "saved_model",
            "params": result.params,
            "source_uri": model_uri,
            "source_format": result.source_format,
            "trainable": result.trainable,
            "output": result.output,
        }
    )
    return model.uri
