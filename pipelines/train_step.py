"""``train_step``: the training step as a sub-pipeline that runs where you ask.

``target`` picks the engine at run time:

* ``local``    - ``components/train.py`` in a pod of the pipeline (one replica,
  ``MirroredStrategy`` over ``gpus_per_replica`` GPUs); under KFP's local
  runner it simply runs in-process (resources and kfp-kubernetes settings are
  ignored there).
* ``trainjob`` - a Kubeflow Trainer v2 TrainJob (``replicas`` nodes on the
  ``tfopt-tensorflow`` runtime) via ``train_trainjob``.
* ``jobset``   - a bare JobSet of ``replicas`` workers via ``train_jobset``.
* ``vertex``   - a Vertex AI custom job (worker pools) via ``train_vertex``.
* ``tfjob``    - a legacy Training Operator v1 TFJob (chief + ``replicas - 1``
  workers) via ``train_tfjob``. Its old name ``kubeflow`` still works: the request
  check logs a deprecation warning naming ``tfjob``.

A set ``model_uri`` comes first: the ``import_model`` step (a user's trained model,
``tfopt.training.imported``) replaces training on every target.

The branches are ``dsl.If/Elif/Else``, the TFJob the ``Else`` (the request check refuses
an unknown target before any branch runs). KFP 2.17.3's local runner cannot
resolve a ``dsl.OneOf`` of *artifacts* ("Expected 1 artifact in
ArtifactSelectorSpec"), but it does resolve a ``OneOf`` of *parameters*, so
each branch returns its model's URI as a string and one ``dsl.importer``
after the branches turns the chosen URI into the step's ``Model`` output.
The same YAML runs on Kubeflow Pipelines and Vertex AI Pipelines.
"""

from kfp import dsl, kubernetes
from kfp.dsl import Artifact, Dataset, Input, Model

from tfopt.components import _describe
from tfopt.components._image import GPU_IMAGE
from tfopt.components.artifact_uri import artifact_uri
from tfopt.components.import_model import import_model
from tfopt.components.plan_training import plan_training
from tfopt.components.train import train
from tfopt.components.train_jobset import train_jobset
from tfopt.components.train_tfjob import train_tfjob
from tfopt.components.train_trainjob import train_trainjob
from tfopt.components.train_vertex import train_vertex

TRAIN_TIMEOUT_S = 6 * 3600  # pod deadline of the in-cluster training task
LAUNCHER_TIMEOUT_S = TRAIN_TIMEOUT_S + 900  # the launcher outlives its job's own deadline
TRAIN_RETRIES = 2  # a retried task resumes from its BackupAndRestore checkpoint
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _as_launcher(task):
    """A launcher pod (TFJob, TrainJob, JobSet, Vertex): small, cached, one retry, bounded."""
    task.set_cpu_request("250m").set_memory_request("512Mi").set_memory_limit("1Gi")
    task.set_caching_options(True)
    _retry(task, 1)
    kubernetes.set_timeout(task, LAUNCHER_TIMEOUT_S)
    return task


def _retry(task, retries: int = TRAIN_RETRIES):
    return task.set_retry(
        retries, backoff_duration="60s", backoff_factor=2.0, backoff_max_duration="900s"
    )


def _train_in_cluster(job: dict, plan, cpu, memory, gpu_resource, gpus_per_replica):
    """The ``train`` task in a pod of the pipeline (GPU image, requested resources, GPU node
    pool, retries from its backup); returns the task that hands its model URI on."""
    local = train(**job).after(plan)
    local.set_container_image(GPU_IMAGE)  # CUDA-enabled TensorFlow; runs on CPU nodes too
    (
        local.set_cpu_request(cpu)
        .set_cpu_limit(cpu)
        .set_memory_request(memory)
        .set_memory_limit(memory)
        .set_accelerator_type(gpu_resource)
        .set_accelerator_limit(gpus_per_replica)
        .set_caching_options(True)
    )
    # KFP 2.17.3 does not pass channels used only in resources into the
    # condition's sub-DAG; registering them does.
    local.register_pipeline_channels([cpu, memory, gpu_resource, gpus_per_replica])
    _retry(local)
    kubernetes.set_timeout(local, TRAIN_TIMEOUT_S)
    kubernetes.add_node_selector_json(local, plan.outputs["node_selector"])
    kubernetes.add_toleration(local, **GPU_TOLERATION)
    return artifact_uri(artifact=local.outputs["model"]).set_caching_options(False)


def _launcher(component, plan, **inputs):
    """A launcher task (TFJob, TrainJob, JobSet, Vertex) after the request check."""
    return _as_launcher(component(**inputs).after(plan))


def _as_model(branch_uris: list, target):
    """The chosen branch's model URI as the step's ``Model`` (a ``OneOf`` of parameters, which
    KFP's local runner resolves, then an importer)."""
    trained = dsl.importer(
        artifact_uri=dsl.OneOf(*branch_uris),
        artifact_class=Model,
        reimport=False,
        metadata={"format": "saved_model", "variant": "baseline", "target": target},
    )
    trained.set_display_name("trained-model")
    return trained.output


@dsl.pipeline(name="train-step")
@_describe.inputs(plan_training, train_jobset, train_vertex, import_model)
def train_step(
    dataset: Input[Dataset],
    hyperparameters: Input[Artifact],
    train_config: dict = {},  # noqa: B006 - a pipeline default, never mutated
    target: str = "local",
    replicas: int = 1,
    gpus_per_replica: int = 0,
    accelerator_type: str = "NVIDIA_TESLA_T4",
    gpu_resource: str = "nvidia.com/gpu",
    cpu: str = "4",
    memory: str = "16Gi",
    namespace: str = "kubeflow",
    timeout_s: int = 21600,
    queue_name: str = "",
    project: str = "",
    location: str = "us-central1",
    staging_bucket: str = "",
    machine_type: str = "n1-standard-8",
    model_uri: str = "",
    fine_tune_epochs: int = 0,
    input_range: str = "auto",
    model_output: str = "auto",
) -> Model:
    """Train on ``target`` and return the trained SavedModel as a ``Model`` artifact.

    ``hyperparameters`` is a tune step's output: its best hyperparameters override
    the matching training parameters on every target (the TFJob and Vertex
    launchers apply them before sending the config to the workers), and a disabled
    tune step's (skipped) output changes nothing. It is required because KFP's
    local runner cannot run a sub-pipeline whose optional artifact input is left out.
    ``train_config`` holds the training settings, ``TrainConfig`` / ``ModelConfig``
    field names, flat (``components/train_config.py`` makes it from the optimize
    pipeline's parameters; absent names keep their defaults); every train component
    takes it as is and checks it. ``batch_size`` is per replica;
    ``scale_learning_rate`` multiplies the learning rate by the number of replicas.
    ``gpu_resource`` is the accelerator resource of the in-cluster task
    (``nvidia.com/gpu`` on Kubeflow, the Vertex name such as ``NVIDIA_TESLA_T4`` on
    Vertex AI Pipelines). ``queue_name`` (``trainjob`` and ``jobset`` targets) labels
    the job for a Kueue LocalQueue, so the cluster's GPU quota and fair sharing apply.
    ``model_uri`` (with ``fine_tune_epochs``, ``input_range``, ``model_output``): import
    that model instead of training one (``components/import_model.py``).

    Args:
        gpu_resource: The accelerator resource of the in-cluster train task
            (nvidia.com/gpu on Kubeflow; a Vertex name such as NVIDIA_TESLA_T4 on Vertex AI).

    Returns:
        The trained (or imported) SavedModel.
    """
    plan = plan_training(
        target=target,
        replicas=replicas,
        gpus_per_replica=gpus_per_replica,
        accelerator_type=accelerator_type,
    ).set_caching_options(False)
    plan.set_display_name("check-training-request")
    # what every train component takes, and what the launchers add
    job = {"dataset": dataset, "hyperparameters": hyperparameters, "train_config": train_config}
    shape = {
        "replicas": replicas,
        "gpus_per_replica": gpus_per_replica,
        "accelerator_type": accelerator_type,
    }
    cluster = {"namespace": namespace, "cpu": cpu, "memory": memory, "timeout_s": timeout_s}

    with dsl.If(model_uri != "", name="import-model"):
        imported = import_model(
            dataset=dataset,
            model_uri=model_uri,
            fine_tune_epochs=fine_tune_epochs,
            input_range=input_range,
            model_output=model_output,
            train_config=train_config,
        ).after(plan)
        imported.set_caching_options(True)

    with dsl.Elif(target == "local", name="train-in-cluster"):
        local_uri = _train_in_cluster(job, plan, cpu, memory, gpu_resource, gpus_per_replica)

    launched = {}
    for kind, component in (("trainjob", train_trainjob), ("jobset", train_jobset)):
        with dsl.Elif(target == kind, name=f"train-{kind}"):
            launched[kind] = _launcher(
                component, plan, **job, **shape, **cluster, queue_name=queue_name
            )

    with dsl.Elif(target == "vertex", name="train-vertex"):
        vertex = {"project": project, "location": location, "staging_bucket": staging_bucket}
        launched["vertex"] = _launcher(
            train_vertex,
            plan,
            **job,
            **shape,
            **vertex,
            machine_type=machine_type,
            timeout_s=timeout_s,
        )

    # "tfjob", or its old spelling "kubeflow": check-training-request refused every other
    # target (and warned about the old spelling) before any branch runs.
    with dsl.Else(name="train-tfjob"):
        launched["tfjob"] = _launcher(train_tfjob, plan, **job, **shape, **cluster)

    branches = [imported.outputs["Output"], local_uri.output]
    branches += [
        launched[kind].outputs["Output"] for kind in ("trainjob", "jobset", "tfjob", "vertex")
    ]
    return _as_model(branches, target)
