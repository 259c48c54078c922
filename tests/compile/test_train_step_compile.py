"""train_step compiles with the resources, scheduling, retries, timeouts and caching
each target needs, and loads back as a pipeline spec."""

import pytest
import yaml
from kfp import compiler, dsl
from kfp.components import load_component_from_file

from tfopt.client.step_plan import evaluate_condition
from tfopt.components._image import BASE_IMAGE, GPU_IMAGE
from tfopt.components.ingest import ingest
from tfopt.components.tune import tune
from tfopt.pipelines import train_step as ts


@dsl.pipeline(name="train-step-demo")
def demo(
    target: str = "tfjob",
    replicas: int = 4,
    gpus_per_replica: int = 2,
    accelerator_type: str = "NVIDIA_L4",
):
    data = ingest()
    tuned = tune(dataset=data.outputs["dataset"], enabled=False)
    ts.train_step(
        dataset=data.outputs["dataset"],
        hyperparameters=tuned.outputs["best_hyperparameters"],
        train_config={"epochs": 3},
        target=target,
        replicas=replicas,
        gpus_per_replica=gpus_per_replica,
        accelerator_type=accelerator_type,
        cpu="8",
        memory="32Gi",
        project="proj",
        staging_bucket="gs://b/stage",
    )


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    path = tmp_path_factory.mktemp("yaml") / "demo.yaml"
    compiler.Compiler().compile(demo, str(path))
    spec, platform = list(yaml.safe_load_all(path.read_text()))
    return path, spec, platform


def dag_tasks(spec):
    return {
        (comp, name): task
        for comp, c in spec["components"].items()
        if "dag" in c
        for name, task in c["dag"]["tasks"].items()
    }


def test_root_parameters_flow_into_train_step(compiled):
    _, spec, _ = compiled
    root = spec["root"]["inputDefinitions"]["parameters"]
    assert root["target"]["defaultValue"] == "tfjob"
    assert root["gpus_per_replica"]["defaultValue"] == 2
    step = spec["root"]["dag"]["tasks"]["train-step"]["inputs"]["parameters"]
    assert step["gpus_per_replica"] == {"componentInputParameter": "gpus_per_replica"}
    assert step["cpu"]["runtimeValue"]["constant"] == "8"
    assert step["memory"]["runtimeValue"]["constant"] == "32Gi"
    defaults = spec["components"]["comp-train-step"]["inputDefinitions"]["parameters"]
    assert defaults["gpu_resource"]["defaultValue"] == "nvidia.com/gpu"
    assert defaults["accelerator_type"]["defaultValue"] == "NVIDIA_TESLA_T4"
    assert defaults["target"]["defaultValue"] == "local"


def test_in_cluster_task_resources(compiled):
    _, spec, _ = compiled
    train = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert train["image"] == GPU_IMAGE
    res = train["resources"]
    assert (
        res["accelerator"]["resourceType"]
        == "{{$.inputs.parameters['pipelinechannel--gpu_resource']}}"
    )
    assert (
        res["accelerator"]["resourceCount"]
        == "{{$.inputs.parameters['pipelinechannel--gpus_per_replica']}}"
    )
    for key in ("resourceCpuRequest", "resourceCpuLimit"):
        assert res[key] == "{{$.inputs.parameters['pipelinechannel--cpu']}}"
    for key in ("resourceMemoryRequest", "resourceMemoryLimit"):
        assert res[key] == "{{$.inputs.parameters['pipelinechannel--memory']}}"
    # The channels the resources use reach the condition's sub-DAG (KFP does not do it alone).
    branch = next(
        c for c in spec["components"].values() if "dag" in c and "train" in c["dag"]["tasks"]
    )
    assert {
        "pipelinechannel--gpus_per_replica",
        "pipelinechannel--cpu",
        "pipelinechannel--memory",
        "pipelinechannel--gpu_resource",
    } <= set(branch["inputDefinitions"]["parameters"])
    launcher = spec["deploymentSpec"]["executors"]["exec-train-tfjob"]["container"]
    assert launcher["image"] == BASE_IMAGE
    assert launcher["resources"]["resourceMemoryLimit"] == "1Gi"


def test_kubernetes_platform_spec(compiled):
    _, _, platform = compiled
    execs = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = execs["exec-train"]
    assert train["nodeSelector"]["nodeSelectorJson"] == {
        "componentInputParameter": "pipelinechannel--plan-training-node_selector"
    }
    assert train["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert int(train["activeDeadlineSeconds"]) == ts.TRAIN_TIMEOUT_S
    for name in (
        "exec-train-trainjob",
        "exec-train-jobset",
        "exec-train-tfjob",
        "exec-train-vertex",
    ):
        assert int(execs[name]["activeDeadlineSeconds"]) == ts.LAUNCHER_TIMEOUT_S


def test_branches_retries_and_caching(compiled):
    _, spec, _ = compiled
    tasks = dag_tasks(spec)
    by_name = {name: task for (_, name), task in tasks.items()}
    conditions = sorted(
        t["triggerPolicy"]["condition"]
        for t in by_name.values()
        if "triggerPolicy" in t and "condition" in t["triggerPolicy"]
    )
    # a set model_uri imports the model first; else local is the first training branch
    first = [c for c in conditions if not c.startswith("!")]
    assert first == ["inputs.parameter_values['pipelinechannel--model_uri'] != ''"]
    assert any(c.endswith("['pipelinechannel--target'] == 'local'") for c in conditions)
    training = [c for c in conditions if c not in first]
    assert all(
        c.startswith("!(inputs.parameter_values['pipelinechannel--model_uri']") for c in training
    )
    assert any("== 'vertex'" in c for c in conditions)
    assert any("== 'trainjob'" in c for c in conditions)
    assert any("== 'jobset'" in c for c in conditions)
    assert by_name["train"]["retryPolicy"] == {
        "maxRetryCount": 2,
        "backoffDuration": "60s",
        "backoffFactor": 2.0,
        "backoffMaxDuration": "900s",
    }
    for launcher in ("train-trainjob", "train-jobset", "train-tfjob", "train-vertex"):
        assert by_name[launcher]["retryPolicy"]["maxRetryCount"] == 1
        # tuned hyperparameters reach every target, not only the in-cluster one
        assert "hyperparameters" in by_name[launcher]["inputs"]["artifacts"]
        assert by_name[launcher]["cachingOptions"] == {"enableCache": True}
    for launcher in ("train-trainjob", "train-jobset"):  # the Kueue queue reaches both
        assert by_name[launcher]["inputs"]["parameters"]["queue_name"] == {
            "componentInputParameter": "pipelinechannel--queue_name"
        }
    assert by_name["train"]["cachingOptions"] == {"enableCache": True}
    assert by_name["import-model"]["cachingOptions"] == {"enableCache": True}
    assert "retryPolicy" not in by_name["import-model"]  # its errors are deterministic
    # The request check and the URI hand-off always run (cheap, never stale).
    assert not by_name["plan-training"]["cachingOptions"].get("enableCache")
    assert not by_name["artifact-uri"]["cachingOptions"].get("enableCache")
    # One Model comes out, chosen among the branches by an importer.
    assert "importer" in by_name
    out = spec["components"]["comp-train-step"]["outputDefinitions"]["artifacts"]
    assert list(out.values())[0]["artifactType"]["schemaTitle"] == "system.Model"


def test_each_target_runs_its_branch_and_kubeflow_is_still_the_tfjob(compiled):
    _, spec, _ = compiled
    group = next(
        c for c in spec["components"].values() if "dag" in c and "condition-2" in c["dag"]["tasks"]
    )

    def launched(target):
        values = {"pipelinechannel--model_uri": "", "pipelinechannel--target": target}
        chosen = [
            t["componentRef"]["name"]
            for t in group["dag"]["tasks"].values()
            if evaluate_condition(t["triggerPolicy"]["condition"], values)
        ]
        return {task for c in chosen for task in spec["components"][c]["dag"]["tasks"]}

    assert launched("tfjob") == {"train-tfjob"}
    assert launched("kubeflow") == {"train-tfjob"}  # the old name, warned about by plan-training
    assert launched("vertex") == {"train-vertex"}
    assert launched("jobset") == {"train-jobset"}
    assert launched("local") == {"train", "artifact-uri"}


def test_loads_back(compiled):
    path, _, _ = compiled
    loaded = load_component_from_file(str(path))
    assert loaded.name == "train-step-demo"
