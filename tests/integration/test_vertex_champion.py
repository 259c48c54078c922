"""The champion of deploy_target vertex (issue 34): the model the endpoint serves most
traffic to, read back through the aiplatform v1 API (the local stand-in). The deployed
models' artifact_uri are local SavedModels here (tfopt's own deploy takes gs:// only, which
this machine cannot read)."""

from __future__ import annotations

import shutil

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform_v1 as v1
from vertex_standin_server import VertexStandIn

from tfopt.deploy import vertex
from tfopt.deploy.champion import resolve_champion

pytestmark = pytest.mark.timeout(600)  # a hang guard: cold imports of TF and aiplatform
PROJECT, REGION = "test-project", "us-central1"
IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


@pytest.fixture
def standin(monkeypatch):
    server = VertexStandIn(PROJECT, REGION).start()
    for name in (*vertex.ENV_PROJECT, *vertex.ENV_REGION, *vertex.ENV_SERVICE_ACCOUNT):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(vertex.ENV_API_ENDPOINT[0], server.address)
    yield server
    server.stop()


def _resolve(**kwargs):
    return resolve_champion(
        "vertex", project=PROJECT, region=REGION, credentials=AnonymousCredentials(), **kwargs
    )


def _clients(server):
    from tfopt.deploy.vertex_target import Clients, VertexTarget

    return Clients(VertexTarget(PROJECT, REGION, server.address), AnonymousCredentials())


def _endpoint_serving(server, model_version: str):
    """An endpoint serving ``model_version`` at 100%, made through the v1 API."""
    c = _clients(server)
    ep = c.endpoints.create_endpoint(
        parent=f"projects/{PROJECT}/locations/{REGION}",
        endpoint=v1.Endpoint(display_name="tfopt-endpoint"),
    ).result()
    c.endpoints.deploy_model(
        endpoint=ep.name,
        deployed_model=v1.DeployedModel(model=model_version, display_name="v1"),
        traffic_split={"0": 100},
    ).result()
    return ep.name


def test_the_model_with_the_most_traffic_is_the_champion(standin, small_model_dir, tmp_path):
    first = _resolve()
    assert first.uri == "" and first.source == "vertex"
    assert "endpoint 'tfopt-endpoint' serves no model yet" in first.reason
    name = standin.add_model("tfopt-model", small_model_dir)
    endpoint = _endpoint_serving(standin, f"{name}@1")
    found = _resolve()
    assert (found.uri, found.source, found.version, found.reason) == (
        small_model_dir,
        "vertex",
        f"{name}@1",
        "",
    )
    # version 2 as a 10% canary: version 1 still answers most requests, so it stays champion
    copy = tmp_path / "v2"
    shutil.copytree(small_model_dir, copy)
    c = _clients(standin)
    c.models.upload_model(
        request=v1.UploadModelRequest(
            parent=f"projects/{PROJECT}/locations/{REGION}",
            model=v1.Model(
                display_name="tfopt-model",
                artifact_uri=str(copy),
                container_spec=v1.ModelContainerSpec(image_uri=IMAGE),
            ),
            parent_model=name,
        )
    ).result()
    (old_id,) = standin.endpoints[endpoint].traffic_split
    c.endpoints.deploy_model(
        endpoint=endpoint,
        deployed_model=v1.DeployedModel(model=f"{name}@2", display_name="v2"),
        traffic_split={"0": 10, old_id: 90},
    ).result()
    assert _resolve().version == f"{name}@1"
    new_id = next(k for k in standin.endpoints[endpoint].traffic_split if k != old_id)
    c.endpoints.update_endpoint(
        endpoint=v1.Endpoint(name=endpoint, traffic_split={new_id: 100}),
        update_mask={"paths": ["traffic_split"]},
    )
    found = _resolve()
    assert (found.uri, found.version) == (str(copy), f"{name}@2")
    assert standin.methods_called()[-2:] == ["ListEndpoints", "GetModel"]  # it only reads


def test_a_vertex_champion_that_cannot_be_loaded_is_left_out(standin, tmp_path):
    name = standin.add_model("tfopt-model", str(tmp_path / "deleted"))
    _endpoint_serving(standin, f"{name}@1")
    found = _resolve()
    assert found.uri == "" and found.version == f"{name}@1"
    assert "cannot be loaded" in found.reason and "compared without a champion" in found.reason
