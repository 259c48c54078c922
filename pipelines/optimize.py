"""The ``tfopt-optimize`` pipeline: ingest -> (tune) -> train -> compress -> evaluate -> select ->
deploy.

Wiring only: every step is a component from ``tfopt.components``. Variants
are switched on or off by ``enable_*`` parameters; a disabled variant runs as
a cheap no-op step (and so does everything derived from it), so the
evaluation and selection steps take every variant as an optional input
without ``dsl.If`` plumbing. Deployment runs only under ``dsl.If`` on the
selection's ``blessed`` output, then on the infra validation's
``infra_blessed`` (TF Serving) or on the target (Vertex AI).
"""

import contextlib
import contextvars

from kfp import dsl
from kfp.dsl import Artifact

from tfopt import registry
from tfopt.components import _util, compress
from tfopt.components.deploy_kserve import deploy_kserve
from tfopt.components.deploy_tf_serving import deploy_tf_serving
from tfopt.components.deploy_vertex import deploy_vertex
from tfopt.components.evaluate import evaluate
from tfopt.components.infra_validate import infra_validate
from tfopt.components.ingest import ingest
from tfopt.components.inspect_model import inspect_model
from tfopt.components.select import select
from tfopt.components.train_config import train_config
from tfopt.components.tune import tune
from tfopt.components.validate_data import validate_data
from tfopt.pipelines.parameters import with_compression_parameters, with_described_parameters
from tfopt.pipelines.train_step import train_step

PIPELINE_NAME = "tfopt-optimize"


@contextlib.contextmanager
def _gate(condition, name: str):
    """``dsl.If`` with a group name unique across sub-pipelines.

    KFP 2.17.3 names groups ``condition-N`` from a per-pipeline counter, so a
    pipeline's groups collide with those of a sub-pipeline (``train_step``)
    and the compiler then looks up inputs in the wrong group.
    """
    with dsl.If(condition, name=name) as group:
        group.name = f"gate-{name}"
        yield group


# the pipeline parameters ingest takes, under the same names
_INGEST = (
    "source", "label_column", "feature_shape", "num_classes", "force_classification", "seed",
    "validation_fraction", "test_fraction", "max_examples", "image_size", "channels",
    "skip_corrupt_images",
)  # fmt: skip
_SELECT = (
    "max_accuracy_drop", "max_size_bytes", "max_latency_ms_p99", "objective", "previous_summary",
    "min_accuracy_change", "change_mode", "deploy_target", "min_accuracy", "min_f1",
)  # fmt: skip
# the pipeline parameters validate-data takes: where the champion is, the drift thresholds
_VALIDATE = (
    "deploy_target", "serving_base_path", "model_name", "champion_uri", "project", "region",
    "drift_linf_threshold", "drift_js_threshold", "accept_drift",
)  # fmt: skip


def _validate(p: dict, dataset):
    """The champion, and this run's data against its training data, before any training."""
    task = validate_data(dataset=dataset, **{k: p[k] for k in _VALIDATE})
    return task.set_display_name("validate-data").set_caching_options(False)  # the champion moves


def _train(p: dict, dataset, validated):
    """(tune ->) train-config -> train (or import): the baseline model, once the data passed
    validation."""
    tuned = tune(
        dataset=dataset,
        search_space=p["tune_search_space"],
        algorithm=p["tune_algorithm"],
        max_trials=p["tune_trials"],
        epochs=p["tune_epochs"],
        seed=p["seed"],
        enabled=p["enable_tuning"],
    ).set_display_name("tune")
    tuned.after(validated)
    # one mapping down to every train component (the parameters stay flat: KFP's interface)
    settings = train_config(**{name: p[name] for name in _util.TRAIN_SETTINGS})
    settings.set_display_name("train-config").set_caching_options(False)  # cheap, no TF
    settings.after(validated)
    step = train_step(
        dataset=dataset,
        hyperparameters=tuned.outputs["best_hyperparameters"],
        train_config=settings.output,
        target=p["training_target"],
        replicas=p["replicas"],
        gpus_per_replica=p["gpus_per_replica"],
        accelerator_type=p["accelerator_type"],
        queue_name=p["training_queue_name"],
        model_uri=p["model_uri"],
        fine_tune_epochs=p["fine_tune_epochs"],
        input_range=p["input_range"],
        model_output=p["model_output"],
    )
    return step.set_display_name("train").output


# What makes a variant's step from the variant and its inputs: None = its technique's
# component. The search fan-out (pipelines/search_fanout.py) sets it while it builds its
# flavour of this pipeline.
VARIANT_STEP: contextvars.ContextVar = contextvars.ContextVar("variant_step", default=None)


def _compress(p: dict, dataset, baseline) -> dict:
    """One step per variant of the registry, on its base's output: variant -> its model."""
    models = {registry.BASELINE: baseline}
    for variant in registry.variants():  # a base comes before the variants made from it
        t = registry.get_technique(variant.technique)
        settings = {s.name: p[s.param] for s in t.settings if s.param}
        inputs = {
            "model": models[variant.base],
            "dataset": dataset,
            "variant": variant.name,
            "enabled": p[variant.switch] if variant.switch else True,
            **{k: p[k] for k in ("skip_non_contenders", "deploy_target", "objective")},
            **settings,
            **variant.settings,  # a variant's own settings win
        }
        step = VARIANT_STEP.get()
        task = step(variant, inputs) if step else compress.COMPONENTS[t.name](**inputs)
        models[variant.name] = task.set_display_name(variant.task).outputs["compressed_model"]
    return {name: models[name] for name in registry.names()}


def _select(p: dict, dataset, baseline, candidates: dict, validated):
    evaluated = evaluate(
        dataset=dataset,
        baseline=baseline,
        latency_iterations=p["latency_iterations"],
        validation=validated.outputs["validation"],  # the champion, evaluated beside them
        **candidates,
    ).set_display_name("evaluate")
    selected = select(
        evaluations=evaluated.outputs["evaluations"],
        pipeline_name=PIPELINE_NAME,
        baseline_model=baseline,
        **{k: p[k] for k in _SELECT},
        **candidates,
    ).set_display_name("select")
    return selected.set_caching_options(False)  # cheap; previous_summary may change outside


def _deploy(p: dict, dataset, selected) -> None:
    """Only a blessed pick: infra validation then TF Serving, Vertex AI, or KServe (then the
    Kubeflow Model Registry)."""
    model, blessed = selected.outputs["selected_model"], selected.outputs["Output"]
    with _gate(blessed == True, "blessed"):  # noqa: E712
        with _gate(p["deploy_target"] == "tf_serving", "tf-serving"):
            infra = infra_validate(model=model, dataset=dataset, model_name=p["model_name"])
            infra.set_display_name("infra-validate").set_caching_options(False)
            with _gate(infra.outputs["Output"] == True, "infra-blessed"):  # noqa: E712
                deploy_tf_serving(
                    model=model,
                    dataset=dataset,
                    model_base_path=p["serving_base_path"],
                    model_name=p["model_name"],
                    variant=p["serving_variant"],
                    blessed=blessed,
                    infra_blessed=infra.outputs["Output"],
                ).set_display_name("deploy-tf-serving").set_caching_options(False)
        with _gate(p["deploy_target"] == "vertex", "vertex"):
            deploy_vertex(
                model=model,
                dataset=dataset,
                project=p["project"],
                region=p["region"],
                model_display_name=p["model_name"],
                machine_type=p["vertex_machine_type"],
                canary_percent=p["canary_percent"],
            ).set_display_name("deploy-vertex").set_caching_options(False)
        with _gate(p["deploy_target"] == "kserve", "kserve"):
            deploy_kserve(
                model=model,
                dataset=dataset,
                summary=selected.outputs["summary"],
                serving_base_path=p["serving_base_path"],
                storage_uri=p["kserve_storage_uri"],
                model_name=p["model_name"],
                namespace=p["kserve_namespace"],
                variant=p["serving_variant"],
                accelerator_type=p["accelerator_type"],  # the training step's GPU node pool
                canary_percent=p["canary_percent"],
                blessed=blessed,
                model_registry_host=p["model_registry_host"],
                pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            ).set_display_name("deploy-kserve").set_caching_options(False)


# The console's groups: the first parameter of each, in signature order (the compression
# parameters the registry inserts are a group of their own).
GROUPS = {
    "source": "data",
    "enable_tuning": "training",
    "latency_iterations": "selection",
    "deploy_target": "deploy",
}


@with_described_parameters(GROUPS)
@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Train a TensorFlow classifier, compress it (TFLite float32 / dynamic / float16 / "
    "int8, pruning, distillation, low-rank factorization, quantization-aware "
    "training), evaluate every candidate on the test split, select one against "
    "accuracy / size / latency targets and deploy it (TF Serving or Vertex AI) only "
    "when it is blessed. Every parameter has a default: the built-in digits dataset "
    "runs as is.",
)
@with_compression_parameters(before="latency_iterations")
def optimize(
    # data
    source: str = "builtin:digits",
    label_column: str = "label",
    feature_shape: str = "",
    num_classes: int = 0,  # 0 = max(label) + 1, checked for gaps / a continuous target
    force_classification: bool = False,  # accept what that check rejects
    seed: int = 42,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
    max_examples: int = 0,  # > 0: a seeded class-stratified subset (quick runs)
    image_size: str = "",  # image folders: "height,width" to resize to at ingest
    channels: int = 0,  # image folders: 1 or 3; 0 = 3 when any image has colour
    skip_corrupt_images: bool = False,
    # hyperparameter search (off: the train step uses the values below)
    enable_tuning: bool = False,
    tune_trials: int = 6,
    tune_algorithm: str = "random",
    tune_search_space: dict = {},  # noqa: B006 - a pipeline default, never mutated
    tune_epochs: int = 10,
    # training
    arch: str = "cnn",
    width: int = 32,
    depth: int = 2,
    dropout: float = 0.1,
    alpha: float = 1.0,  # width multiplier of mobilenet_v2 / mobilenet_v3_small
    weights_uri: str = "",  # a .h5 (by layer name) or checkpoint loaded into the built model
    optimizer: str = "adam",
    learning_rate: float = 0.001,
    scale_learning_rate: bool = False,
    epochs: int = 20,
    batch_size: int = 64,
    early_stopping_patience: int = 3,
    precision: str = "float32",
    xla: bool = False,
    augment: str = "",
    module_file: str = "",  # your model code: build_model(hparams, input_shape, num_classes)
    # bring your own model: a trained model imported in place of training
    model_uri: str = "",  # tf_keras SavedModel, .keras / .h5, or a plain SavedModel
    fine_tune_epochs: int = 0,
    input_range: str = "auto",  # what the model expects: uint8 | unit | symmetric | auto
    model_output: str = "auto",  # logits | probabilities | auto (detected)
    training_target: str = "local",
    replicas: int = 1,
    gpus_per_replica: int = 0,
    accelerator_type: str = "NVIDIA_TESLA_T4",
    training_queue_name: str = "",  # Kueue LocalQueue (training_target trainjob / jobset)
    # compression: each technique's enable_* switches and settings are inserted here
    # from the registry (pipelines/parameters.py)
    # evaluation and selection
    latency_iterations: int = 200,
    max_accuracy_drop: float = 1.0,
    max_size_bytes: int = 0,
    max_latency_ms_p99: float = 0.0,
    objective: str = "smallest",
    skip_non_contenders: bool = False,  # make only what deploy_target and objective can pick
    previous_summary: str = "",  # the weaker check: figures of an older run's test split
    min_accuracy_change: float = 0.0,  # vs the champion (and previous_summary's pick)
    change_mode: str = "absolute",  # absolute (points) | relative (% of the champion's)
    # the champion: the deploy target's model ('' = what it serves now; 'none' = no champion)
    champion_uri: str = "",
    # data validation against the champion's training data, before any training
    drift_linf_threshold: float = 0.1,
    drift_js_threshold: float = 0.1,
    accept_drift: bool = False,
    min_accuracy: float = 0.0,  # hard floors on test accuracy / macro F1, fractions in [0, 1]
    min_f1: float = 0.0,
    # deployment: tf_serving | vertex | kserve | tflite (no server: the pick is the artifact)
    # | none
    deploy_target: str = "tf_serving",
    model_name: str = "tfopt-model",
    serving_base_path: str = "",
    serving_variant: str = "cpu",
    project: str = "",
    region: str = "",
    vertex_machine_type: str = "n1-standard-2",
    canary_percent: int = 10,
    kserve_storage_uri: str = "",  # serving_base_path as the cluster reads it (pvc://, gs://)
    kserve_namespace: str = "",
    model_registry_host: str = "",  # Kubeflow Model Registry: register after a KServe deploy
    **compression,
) -> Artifact:
    """Train, compress, evaluate, select and deploy a TensorFlow classifier.

    A parameter described here means more than the one step input it feeds; every other
    parameter takes the description of the input it feeds (``with_described_parameters``).

    Args:
        seed: Seeds the split, the weights, dropout, shuffling and the search: the same
            seed and data give the same run.
        enable_tuning: Search hyperparameters (the tune step) before training; off, the
            train step uses the training settings as they are.
        deploy_target: Where the pick goes: tf_serving (a TF Serving repository,
            serving_base_path), vertex (a Vertex AI endpoint, project and region), kserve
            (a KServe InferenceService on the TF Serving runtime reading serving_base_path,
            then the Kubeflow Model Registry with model_registry_host), tflite (no server:
            the .tflite file is the artifact) or none (no deployment; the pick may have any
            format).
        model_name: The name the model is served under (TF Serving) and registered as
            (Vertex AI Model Registry): 1-128 letters, digits, '_', '.', '-'.
        max_accuracy_drop: Accuracy points a candidate may lose against the baseline; an
            int8 TFLite conversion falls back when it loses more than this against its
            SavedModel.
        objective: How the pick is chosen among the candidates that pass the gate:
            smallest (file bytes), fastest (batch-1 p50 latency) or most_accurate. With
            search on, a technique that cannot win on it (pruning and clustering change no
            byte nor multiply-add of a dense model; no stronger setting is more accurate)
            is not searched: its search is cut before any trial, saying why.
        skip_non_contenders: Make only what can be picked: a variant (with every variant
            made from it) whose format deploy_target does not serve, or whose technique
            cannot make its base smaller or faster for objective smallest or fastest
            (pruning, clustering), is not made; its step is a no-op saying why, and the
            report lists it as skipped. Off: every enabled variant is made and reported
            (other targets' too).
        serving_base_path: The TF Serving model repository (gs://... or a mounted path)
            of deploy_target tf_serving and kserve: the model goes to
            <serving_base_path>/<model_name>/<version>. Needed on a cluster; a local run
            uses <output-dir>/serving.
        serving_variant: cpu or gpu: the serving image (TF Serving's CPU or GPU build) of
            deploy_target tf_serving's manifests and of the KServe predictor (with a GPU,
            accelerator_type's node selector and the GPU toleration).
        accelerator_type: The GPU (e.g. NVIDIA_TESLA_T4) of GPU training replicas and of a
            gpu KServe predictor: both are scheduled on its node pool.
        canary_percent: Traffic the new model gets while it is smoke-tested (Vertex AI's
            endpoint, KServe's canaryTrafficPercent); a first deploy takes 100% at once.
        project: GCP project of the Vertex AI deployment (deploy_target vertex).
        region: Vertex AI region of the deployment (deploy_target vertex), e.g. us-central1.
    """
    p = {**locals(), **compression}  # the pipeline's parameters (channels), by name
    dataset = ingest(**{k: p[k] for k in _INGEST}).set_display_name("ingest").outputs["dataset"]
    validated = _validate(p, dataset)
    baseline = _train(p, dataset, validated)
    # what each technique can apply to, beside the compression steps (not on train's path)
    inspect_model(model=baseline).set_display_name("inspect")
    candidates = _compress(p, dataset, baseline)
    selected = _select(p, dataset, baseline, candidates, validated)
    _deploy(p, dataset, selected)
    return selected.outputs["summary"]
