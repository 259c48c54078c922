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

from kfp import dsl
from kfp.dsl import Artifact

from tfopt.components import _util
from tfopt.components.deploy_tf_serving import deploy_tf_serving
from tfopt.components.deploy_vertex import deploy_vertex
from tfopt.components.distill import distill
from tfopt.components.evaluate import evaluate
from tfopt.components.infra_validate import infra_validate
from tfopt.components.ingest import ingest
from tfopt.components.litert_quantize import litert_quantize
from tfopt.components.lowrank import lowrank
from tfopt.components.prune import prune
from tfopt.components.qat import qat
from tfopt.components.quantize import quantize
from tfopt.components.select import select
from tfopt.components.train_config import train_config
from tfopt.components.tune import tune
from tfopt.evaluation import candidates as registry
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


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Train a TensorFlow classifier, compress it (TFLite float32 / dynamic / float16 / "
    "int8, pruning, distillation, low-rank factorization, quantization-aware "
    "training), evaluate every candidate on the test split, select one against "
    "accuracy / size / latency targets and deploy it (TF Serving or Vertex AI) only "
    "when it is blessed. Every parameter has a default: the built-in digits dataset "
    "runs as is.",
)
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
    # compression
    enable_tflite_float32: bool = True,
    enable_tflite_dynamic: bool = True,
    enable_tflite_float16: bool = True,
    enable_tflite_int8: bool = True,
    enable_pruning: bool = True,
    enable_distillation: bool = True,
    enable_lowrank: bool = True,
    enable_qat: bool = True,
    enable_litert_quantizer: bool = False,
    representative_samples: int = 200,
    target_sparsity: float = 0.8,
    prune_epochs: int = 6,
    student_width: int = 8,
    distill_temperature: float = 4.0,
    distill_alpha: float = 0.1,
    distill_epochs: int = 20,
    distill_train_scratch: bool = False,
    lowrank_rank: int = 0,  # 0 = chosen per layer by lowrank_energy
    lowrank_energy: float = 0.9,
    lowrank_epochs: int = 5,
    qat_epochs: int = 2,
    # evaluation and selection
    latency_iterations: int = 200,
    max_accuracy_drop: float = 1.0,
    max_size_bytes: int = 0,
    max_latency_ms_p99: float = 0.0,
    objective: str = "smallest",
    previous_summary: str = "",
    min_accuracy_change: float = 0.0,
    min_accuracy: float = 0.0,  # hard floors on test accuracy / macro F1, fractions in [0, 1]
    min_f1: float = 0.0,
    # deployment: tf_serving | vertex | tflite (no server: the pick is the artifact) | none
    deploy_target: str = "tf_serving",
    model_name: str = "tfopt-model",
    serving_base_path: str = "",
    serving_variant: str = "cpu",
    project: str = "",
    region: str = "",
    vertex_machine_type: str = "n1-standard-2",
    canary_percent: int = 10,
) -> Artifact:
    params = dict(locals())  # the pipeline's parameters (channels), for the enable_* switches
    data = ingest(
        source=source,
        label_column=label_column,
        feature_shape=feature_shape,
        num_classes=num_classes,
        force_classification=force_classification,
        seed=seed,
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        max_examples=max_examples,
        image_size=image_size,
        channels=channels,
        skip_corrupt_images=skip_corrupt_images,
    ).set_display_name("ingest")
    dataset = data.outputs["dataset"]

    tuned = tune(
        dataset=dataset,
        search_space=tune_search_space,
        algorithm=tune_algorithm,
        max_trials=tune_trials,
        epochs=tune_epochs,
        seed=seed,
        enabled=enable_tuning,
    ).set_display_name("tune")
    # one mapping down to every train component (the parameters above stay flat: KFP's interface)
    settings = train_config(**{name: params[name] for name in _util.TRAIN_SETTINGS})
    settings.set_display_name("train-config").set_caching_options(False)  # cheap, no TF
    baseline = (
        train_step(
            dataset=dataset,
            hyperparameters=tuned.outputs["best_hyperparameters"],
            train_config=settings.output,
            target=training_target,
            replicas=replicas,
            gpus_per_replica=gpus_per_replica,
            accelerator_type=accelerator_type,
            queue_name=training_queue_name,
            model_uri=model_uri,
            fine_tune_epochs=fine_tune_epochs,
            input_range=input_range,
            model_output=model_output,
        )
        .set_display_name("train")
        .output
    )

    def make(variant, model):
        """The step that makes ``variant`` (a registry entry) from ``model``, its base."""
        enabled = params[variant.switch] if variant.switch else True
        common = dict(model=model, dataset=dataset, enabled=enabled)
        if variant.technique == "tflite":
            # int8 falls back (selective, then float16) when it loses more than the policy allows
            task = quantize(
                **common,
                variant=variant.name,
                mode=variant.mode,
                representative_samples=representative_samples,
                max_accuracy_drop=max_accuracy_drop,
            )
        elif variant.technique == "litert":
            task = litert_quantize(
                **common,
                variant=variant.name,
                recipe=variant.mode,
            )
        elif variant.technique == "prune":
            task = prune(**common, target_sparsity=target_sparsity, epochs=prune_epochs, seed=seed)
        elif variant.technique == "distill":
            task = distill(
                **common,
                student_width=student_width,
                temperature=distill_temperature,
                alpha=distill_alpha,
                epochs=distill_epochs,
                seed=seed,
                train_scratch=distill_train_scratch,
            )
        elif variant.technique == "lowrank":
            task = lowrank(
                **common, rank=lowrank_rank, energy=lowrank_energy, epochs=lowrank_epochs, seed=seed
            )
        elif variant.technique == "qat":
            # QAT of a pruned model keeps its sparsity (pqat_int8)
            pruned = variant.base != registry.BASELINE
            pruned = pruned and registry.get(variant.base).technique == "prune"
            task = qat(
                **common,
                variant=variant.name,
                preserve_sparsity=pruned,
                epochs=qat_epochs,
                seed=seed,
                representative_samples=representative_samples,
            )
        else:
            raise ValueError(f"variant {variant.name}: no step for technique {variant.technique}")
        return task.set_display_name(variant.task).outputs[variant.output]

    models = {registry.BASELINE: baseline}
    for variant in registry.VARIANTS:  # a base comes before the variants made from it
        models[variant.name] = make(variant, models[variant.base])
    candidates = {name: models[name] for name in registry.NAMES}

    evaluated = evaluate(
        dataset=dataset, baseline=baseline, latency_iterations=latency_iterations, **candidates
    ).set_display_name("evaluate")
    selected = select(
        evaluations=evaluated.outputs["evaluations"],
        pipeline_name=PIPELINE_NAME,
        max_accuracy_drop=max_accuracy_drop,
        max_size_bytes=max_size_bytes,
        max_latency_ms_p99=max_latency_ms_p99,
        objective=objective,
        previous_summary=previous_summary,
        min_accuracy_change=min_accuracy_change,
        deploy_target=deploy_target,
        min_accuracy=min_accuracy,
        min_f1=min_f1,
        baseline_model=baseline,
        **candidates,
    ).set_display_name("select")
    selected.set_caching_options(False)  # cheap, and previous_summary may change outside

    with _gate(selected.outputs["Output"] == True, "blessed"):  # noqa: E712
        with _gate(deploy_target == "tf_serving", "tf-serving"):
            infra = infra_validate(
                model=selected.outputs["selected_model"], dataset=dataset, model_name=model_name
            ).set_display_name("infra-validate")
            infra.set_caching_options(False)
            with _gate(infra.outputs["Output"] == True, "infra-blessed"):  # noqa: E712
                deploy_tf_serving(
                    model=selected.outputs["selected_model"],
                    dataset=dataset,
                    model_base_path=serving_base_path,
                    model_name=model_name,
                    variant=serving_variant,
                    blessed=selected.outputs["Output"],
                    infra_blessed=infra.outputs["Output"],
                ).set_display_name("deploy-tf-serving").set_caching_options(False)
        with _gate(deploy_target == "vertex", "vertex"):
            deploy_vertex(
                model=selected.outputs["selected_model"],
                dataset=dataset,
                project=project,
                region=region,
                model_display_name=model_name,
                machine_type=vertex_machine_type,
                canary_percent=canary_percent,
            ).set_display_name("deploy-vertex").set_caching_options(False)
    return selected.outputs["summary"]
