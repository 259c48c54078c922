"""Vertex AI paths end to end against a local aiplatform v1 gRPC stand-in.

tfopt's deploy code and the real google-cloud-aiplatform SDK (GAPIC clients,
PipelineJob, PipelineJobSchedule) talk TLS gRPC to ``VertexStandIn``; the
tests assert on the requests that arrive: deploy / promote / rollback
sequence, traffic splits, the PipelineJob and Schedule created.
"""

from __future__ import annotations

import os

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from vertex_standin_server import StorageStandIn, VertexStandIn

from tfopt.client import schedule, submit
from tfopt.deploy import vertex
from tfopt.errors import ConfigError

# A guard against hangs, not a speed check: submitting compiles the pipeline after a cold
# import of TF, kfp and aiplatform (one test took 94 s of the old 120 s with both cores busy).
pytestmark = pytest.mark.timeout(600)
PROJECT, REGION = "test-project", "us-central1"
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
INSTANCES = [[[0.0] * 8] * 8, [[1.0] * 8] * 8]


@pytest.fixture
def standin(monkeypatch):
    server = VertexStandIn(PROJECT, REGION).start()
    for name in (
        *vertex.ENV_PROJECT,
        *vertex.ENV_REGION,
        *vertex.ENV_API_ENDPOINT,
        *vertex.ENV_SERVICE_ACCOUNT,
    ):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.stop()


@pytest.fixture
def sdk_state():
    """aiplatform.init() sets process-wide defaults; give each test a fresh config."""
    from google.cloud.aiplatform import initializer

    config = initializer.global_config  # aiplatform.init is bound to this object
    saved = dict(vars(config))
    vars(config).update(vars(initializer._Config()))
    yield
    vars(config).clear()
    vars(config).update(saved)


def _deploy(server, uri, **changes):
    config = vertex.DeployConfig(serving_image=IMAGE, labels={"app": "tfopt"}, **changes)
    target = vertex.VertexTarget(PROJECT, REGION, server.address)
    return vertex.deploy_model(uri, INSTANCES, config, target, credentials=AnonymousCredentials())


def test_first_deploy_creates_model_and_endpoint_then_promotes(standin):
    result = _deploy(standin, "gs://bucket/model/v1")
    assert standin.methods_called() == [
        "ListModels",
        "UploadModel",
        "ListEndpoints",
        "CreateEndpoint",
        "DeployModel",
        "Predict",
        "UpdateEndpoint",
    ]
    upload = standin.requests("UploadModel")[0]
    assert upload.parent == f"projects/{PROJECT}/locations/{REGION}"
    assert upload.parent_model == ""
    assert upload.model.artifact_uri == "gs://bucket/model/v1"
    assert upload.model.container_spec.image_uri == IMAGE
    assert dict(upload.model.labels) == {"app": "tfopt"}
    deploy = standin.requests("DeployModel")[0]
    assert dict(deploy.traffic_split) == {"0": 100}  # nothing to compare with: all traffic
    res = deploy.deployed_model.dedicated_resources
    assert (res.machine_spec.machine_type, res.min_replica_count, res.max_replica_count) == (
        "n1-standard-2",
        1,
        1,
    )
    assert deploy.deployed_model.model == f"{result.model}@1"
    assert result.promoted and result.final_split == {result.deployed_model_id: 100}
    assert dict(standin.endpoints[result.endpoint].traffic_split) == {result.deployed_model_id: 100}


def test_second_deploy_is_new_version_canary_then_promoted(standin):
    first = _deploy(standin, "gs://bucket/model/v1")
    standin.calls.clear()
    result = _deploy(
        standin,
        "gs://bucket/model/v2",
        canary_percent=20,
        machine_type="n1-standard-4",
        accelerator_type="NVIDIA_TESLA_T4",
        accelerator_count=1,
        min_replica_count=1,
        max_replica_count=3,
    )
    methods = standin.methods_called()
    assert methods[:6] == [
        "ListModels",
        "ListModelVersions",
        "UploadModel",
        "ListEndpoints",
        "DeployModel",
        "Predict",
    ]
    assert "CreateEndpoint" not in methods  # the endpoint is reused
    assert methods[-2:] == ["UpdateEndpoint", "UndeployModel"]
    assert standin.requests("UploadModel")[0].parent_model == first.model  # new version
    assert result.model == first.model and result.model_version_id == "2"
    deploy = standin.requests("DeployModel")[0]
    assert dict(deploy.traffic_split) == {first.deployed_model_id: 80, "0": 20}
    spec = deploy.deployed_model.dedicated_resources
    assert spec.machine_spec.accelerator_type.name == "NVIDIA_TESLA_T4"
    assert (spec.machine_spec.accelerator_count, spec.max_replica_count) == (1, 3)
    # Predictions went on until the canary itself had answered.
    assert result.canary_answers == 1 and result.smoke_requests == len(standin.requests("Predict"))
    update = standin.requests("UpdateEndpoint")[0]
    assert dict(update.endpoint.traffic_split) == {result.deployed_model_id: 100}
    assert list(update.update_mask.paths) == ["traffic_split"]
    undeploy = standin.requests("UndeployModel")[0]
    assert undeploy.deployed_model_id == first.deployed_model_id
    ep = standin.endpoints[result.endpoint]
    assert [d.id for d in ep.deployed_models] == [result.deployed_model_id]
    assert dict(ep.traffic_split) == {result.deployed_model_id: 100}


def test_a_retried_deploy_uploads_and_deploys_nothing_twice(standin):
    first = _deploy(standin, "gs://bucket/model/v1")
    second = _deploy(standin, "gs://bucket/model/v2")
    standin.calls.clear()
    again = _deploy(standin, "gs://bucket/model/v2")  # KFP retries the task: same inputs
    assert standin.requests("UploadModel") == [] and standin.requests("DeployModel") == []
    assert (again.model, again.model_version_id) == (second.model, "2")
    assert again.deployed_model_id == second.deployed_model_id and again.promoted
    assert len([k for k in standin.models if k.startswith(first.model)]) == 2
    ep = standin.endpoints[again.endpoint]
    assert [d.id for d in ep.deployed_models] == [second.deployed_model_id]
    assert dict(ep.traffic_split) == {second.deployed_model_id: 100}


def test_a_retry_after_a_canary_was_left_half_way_finishes_it(standin):
    # The first attempt died after deploying the canary at 10 % (before the smoke test)
    first = _deploy(standin, "gs://bucket/model/v1")
    standin.serve["gs://bucket/model/v2"] = lambda instances: (_ for _ in ()).throw(
        RuntimeError("killed")
    )
    half = _deploy(standin, "gs://bucket/model/v2", canary_percent=10, undeploy_previous=False)
    assert not half.promoted  # rolled back: put the canary back as a dying attempt leaves it
    ep = standin.endpoints[half.endpoint]
    ep.deployed_models.append(v1_deployed(half))
    ep.traffic_split = {first.deployed_model_id: 90, half.deployed_model_id: 10}
    del standin.serve["gs://bucket/model/v2"]
    standin.calls.clear()
    retried = _deploy(standin, "gs://bucket/model/v2", canary_percent=10)
    assert standin.requests("UploadModel") == [] and standin.requests("DeployModel") == []
    assert retried.deployed_model_id == half.deployed_model_id and retried.promoted
    assert retried.canary_split == {first.deployed_model_id: 90, half.deployed_model_id: 10}
    assert dict(ep.traffic_split) == {half.deployed_model_id: 100}
    assert [d.id for d in ep.deployed_models] == [half.deployed_model_id]


def v1_deployed(result):
    from google.cloud import aiplatform_v1 as v1

    return v1.DeployedModel(
        id=result.deployed_model_id, model=f"{result.model}@{result.model_version_id}"
    )


def test_failing_canary_is_rolled_back_and_previous_split_restored(standin):
    first = _deploy(standin, "gs://bucket/model/v1")
    standin.calls.clear()

    def broken(instances):
        raise RuntimeError("Could not find variable dense/kernel")

    standin.serve["gs://bucket/model/broken"] = broken
    result = _deploy(standin, "gs://bucket/model/broken", canary_percent=10)
    assert not result.promoted and "model server error" in result.reason
    methods = standin.methods_called()
    assert "UpdateEndpoint" not in methods
    assert methods[-1] == "UndeployModel"
    undeploy = standin.requests("UndeployModel")[0]
    assert undeploy.deployed_model_id == result.deployed_model_id
    assert dict(undeploy.traffic_split) == {first.deployed_model_id: 100}
    assert dict(standin.requests("DeployModel")[0].traffic_split) == {
        first.deployed_model_id: 90,
        "0": 10,
    }
    ep = standin.endpoints[result.endpoint]
    assert [d.id for d in ep.deployed_models] == [first.deployed_model_id]
    assert dict(ep.traffic_split) == {first.deployed_model_id: 100}
    assert result.final_split == result.previous_split == {first.deployed_model_id: 100}


def test_wrong_predictions_roll_back(standin):
    _deploy(standin, "gs://bucket/model/v1")
    standin.serve["gs://bucket/model/short"] = lambda instances: [[0.5, 0.5]]  # one row for two
    result = _deploy(standin, "gs://bucket/model/short", canary_percent=50)
    assert not result.promoted and "1 predictions for 2 instances" in result.reason
    assert standin.methods_called()[-1] == "UndeployModel"


def test_corrupt_endpoint_split_stops_before_deploying(standin):
    first = _deploy(standin, "gs://bucket/model/v1")
    ep = standin.endpoints[first.endpoint]
    ep.traffic_split = {first.deployed_model_id: 60, "999": 40}  # 999 is not deployed
    standin.calls.clear()
    with pytest.raises(vertex.DeployError, match="999"):
        _deploy(standin, "gs://bucket/model/v2")
    assert "DeployModel" not in standin.methods_called()


def test_bad_input_fails_before_any_call(standin, monkeypatch):
    target = vertex.VertexTarget("", REGION, standin.address)
    with pytest.raises(ConfigError, match="project is missing"):
        vertex.deploy_model("gs://b/m", INSTANCES, vertex.DeployConfig(serving_image=IMAGE), target)
    with pytest.raises(ConfigError, match="region is missing"):
        vertex.deploy_model(
            "gs://b/m",
            INSTANCES,
            vertex.DeployConfig(serving_image=IMAGE),
            vertex.VertexTarget(PROJECT, "", standin.address),
        )
    with pytest.raises(ConfigError, match="gs://"):
        _deploy(standin, "/local/model")
    with pytest.raises(ConfigError, match="accelerator_type"):
        _deploy(standin, "gs://b/m", accelerator_type="NVIDIA_TESLA_Q9", accelerator_count=1)
    with pytest.raises(vertex.CloudError, match="cannot reach"):
        vertex.deploy_model(
            "gs://b/m",
            INSTANCES,
            vertex.DeployConfig(serving_image=IMAGE),
            vertex.VertexTarget(PROJECT, REGION, "127.0.0.1:1"),
            credentials=AnonymousCredentials(),
        )
    assert standin.calls == []
    # Project and region from the environment.
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
    monkeypatch.setenv("CLOUD_ML_REGION", REGION)
    result = vertex.deploy_model(
        "gs://b/m",
        INSTANCES,
        vertex.DeployConfig(serving_image=IMAGE),
        vertex.VertexTarget(api_endpoint=standin.address),
        credentials=AnonymousCredentials(),
    )
    assert result.endpoint.startswith(f"projects/{PROJECT}/locations/{REGION}/")


# ---------------------------------------------------------------- Vertex AI Pipelines


def _params_file(tmp_path, server, name="params.yaml", **submit_extra):
    doc = {
        "epochs": 3,
        "arch": "mlp",
        "submit": {
            "target": "vertex",
            "project": PROJECT,
            "region": REGION,
            "api_endpoint": server.address,
            "pipeline_root": "gs://bucket/root",
            "service_account": "runner@test-project.iam.gserviceaccount.com",
            "labels": {"team": "ml"},
            **submit_extra,
        },
        "schedule": {"name": "tfopt-nightly", "time_zone": "Europe/Berlin"},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.fixture
def storage(monkeypatch):
    from google.cloud.aiplatform.utils import resource_manager_utils

    gcs = StorageStandIn()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
    # Cloud Resource Manager (project id -> number) is the one API without a stand-in here.
    monkeypatch.setattr(
        resource_manager_utils,
        "get_project_number",
        lambda project_id, credentials=None: int(gcs.project_number),
    )
    yield gcs
    gcs.stop()


@pytest.mark.usefixtures("sdk_state")
def test_submit_and_schedule_on_vertex_pipelines(standin, storage, tmp_path):
    params = _params_file(
        tmp_path, standin, network="projects/123/global/networks/vpc", enable_caching=False
    )
    result = submit.submit_file(
        params, {"width": 16}, credentials=AnonymousCredentials(), run_name="nightly-check"
    )
    req = standin.requests("CreatePipelineJob")[0]
    assert req.parent == f"projects/{PROJECT}/locations/{REGION}"
    assert req.pipeline_job_id == "nightly-check"
    job = req.pipeline_job
    assert job.display_name == "nightly-check"
    assert job.service_account == "runner@test-project.iam.gserviceaccount.com"
    assert job.network == "projects/123/global/networks/vpc"
    assert job.labels["team"] == "ml"
    assert job.runtime_config.gcs_output_directory == "gs://bucket/root"
    values = dict(type(job.runtime_config).to_dict(job.runtime_config)["parameter_values"].items())
    assert values["epochs"] == 3 and values["arch"] == "mlp" and values["width"] == 16
    assert type(job).to_dict(job)["pipeline_spec"]["pipelineInfo"]["name"] == "tfopt-optimize"
    assert result.target == "vertex" and result.name == f"{req.parent}/pipelineJobs/nightly-check"
    assert any("/b/bucket" in p for p in storage.requests)  # SDK checked the root bucket exists

    info = schedule.create_schedule(params, cron="30 2 * * 1-5", credentials=AnonymousCredentials())
    sreq = standin.requests("CreateSchedule")[0]
    assert sreq.schedule.cron == "TZ=Europe/Berlin 30 2 * * 1-5"
    assert sreq.schedule.display_name == "tfopt-nightly"
    assert sreq.schedule.max_concurrent_run_count == 1
    inner = sreq.schedule.create_pipeline_job_request.pipeline_job
    assert inner.service_account == "runner@test-project.iam.gserviceaccount.com"
    assert inner.runtime_config.gcs_output_directory == "gs://bucket/root"

    config = submit.load_submit_config(params)
    listed = schedule.list_schedules(config, credentials=AnonymousCredentials())
    assert [(s.id, s.cron) for s in listed] == [(info.id, "TZ=Europe/Berlin 30 2 * * 1-5")]
    schedule.delete_schedule(config, info.id.rsplit("/", 1)[-1], credentials=AnonymousCredentials())
    assert standin.requests("DeleteSchedule")[0].name == info.id
    assert standin.schedules == {}


@pytest.mark.usefixtures("sdk_state")
def test_vertex_bad_input_creates_nothing(standin, tmp_path, monkeypatch):
    params = _params_file(tmp_path, standin)
    with pytest.raises(ConfigError, match="minute value 75"):
        schedule.create_schedule(params, cron="75 2 * * *", credentials=AnonymousCredentials())
    with pytest.raises(ConfigError, match="unknown parameter.*learning_rat\\b"):
        submit.submit_file(params, {"learning_rat": 0.1}, credentials=AnonymousCredentials())
    with pytest.raises(ConfigError, match="project is missing"):
        submit.submit_file(
            _params_file(tmp_path, standin, "noproject.yaml", project=""),
            credentials=AnonymousCredentials(),
        )
    with pytest.raises(ConfigError, match="gs://"):
        submit.submit_file(params, pipeline_root="/tmp/x", credentials=AnonymousCredentials())
    with pytest.raises(vertex.CloudError, match="cannot reach"):
        submit.submit_file(params, api_endpoint="127.0.0.1:1", credentials=AnonymousCredentials())
    assert standin.calls == []
    assert not os.environ.get("STORAGE_EMULATOR_HOST")  # nothing touched Cloud Storage


def test_deploy_component_fails_on_missing_project_before_reading_data(standin, tmp_path):
    from kfp import dsl

    from tfopt.components.deploy_vertex import deploy_vertex

    with pytest.raises(ConfigError, match="project is missing"):
        deploy_vertex.python_func(
            model=dsl.Model(uri="gs://bucket/model"),
            dataset=dsl.Dataset(uri=str(tmp_path / "no-dataset")),
            metrics=dsl.Metrics(uri=str(tmp_path / "metrics")),
            endpoint=dsl.Artifact(uri=str(tmp_path / "endpoint")),
            region=REGION,
        )
    assert standin.calls == []
