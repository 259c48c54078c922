"""The ``tfopt-optimize`` pipeline: ingest -> train -> compress -> evaluate -> select -> deploy.

Wiring only: every step is a component from ``tfopt.components``. Variants
are switched on or off by ``enable_*`` parameters; a disabled variant runs as
a cheap no-op step so that the evaluation step can take every variant as an
optional input. Deployment runs only under ``dsl.If`` on the selection's
``blessed`` output.
"""

from kfp import dsl
from kfp.dsl import Artifact

from tfopt.components.evaluate import evaluate
from tfopt.components.ingest import ingest
from tfopt.components.quantize import quantize
from tfopt.components.select import select
from tfopt.components.train import train

PIPELINE_NAME = "tfopt-optimize"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Train a TensorFlow classifier, compress it (TFLite quantization), evaluate "
                "every candidate on the test split, select one against accuracy / size / "
                "latency targets and gate deployment on the result. Every parameter has a "
                "default: the built-in digits dataset runs as is.",
)
def optimize(
    source: str = "builtin:digits",
    label_column: str = "label",
    feature_shape: str = "",
    seed: int = 42,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    arch: str = "cnn",
    width: int = 32,
    depth: int = 2,
    dropout: float = 0.1,
    optimizer: str = "adam",
    learning_rate: float = 0.001,
    epochs: int = 30,
    batch_size: int = 64,
    early_stopping_patience: int = 5,
    precision: str = "float32",
    xla: bool = False,
    profile_batches: str = "",
    representative_samples: int = 200,
    enable_tflite_float32: bool = True,
    enable_tflite_int8: bool = True,
    latency_iterations: int = 200,
    max_accuracy_drop: float = 1.0,
    max_size_bytes: int = 0,
    max_latency_ms_p99: float = 0.0,
    objective: str = "smallest",
) -> Artifact:
    data = ingest(source=source, label_column=label_column, feature_shape=feature_shape,
                  seed=seed, validation_fraction=validation_fraction,
                  test_fraction=test_fraction).set_display_name("ingest")
    trained = train(
        dataset=data.outputs["dataset"], arch=arch, width=width, depth=depth, dropout=dropout,
        optimizer=optimizer, learning_rate=learning_rate, epochs=epochs, batch_size=batch_size,
        early_stopping_patience=early_stopping_patience, seed=seed, precision=precision,
        xla=xla, profile_batches=profile_batches).set_display_name("train")
    baseline = trained.outputs["model"]
    tflite = {}
    for mode, enabled in (("float32", enable_tflite_float32), ("int8", enable_tflite_int8)):
        tflite[mode] = quantize(
            model=baseline, dataset=data.outputs["dataset"], variant=f"tflite_{mode}",
            mode=mode, representative_samples=representative_samples,
            enabled=enabled).set_display_name(f"tflite-{mode}").outputs["tflite_model"]
    evaluated = evaluate(
        dataset=data.outputs["dataset"], baseline=baseline, tflite_float32=tflite["float32"],
        tflite_int8=tflite["int8"], latency_iterations=latency_iterations,
    ).set_display_name("evaluate")
    selected = select(
        evaluations=evaluated.outputs["evaluations"], pipeline_name=PIPELINE_NAME,
        max_accuracy_drop=max_accuracy_drop, max_size_bytes=max_size_bytes,
        max_latency_ms_p99=max_latency_ms_p99, objective=objective,
    ).set_display_name("select")
    return selected.outputs["summary"]
