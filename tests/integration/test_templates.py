"""Published templates: ``tfopt publish``, then ``submit`` and ``schedule --template``, against
the KFP stand-in and the Artifact Registry + Vertex AI stand-ins; the event trigger of
docs/submit.md (examples/vertex_trigger) run against them too.

The Artifact Registry stand-in sits at its real addresses (``https://REGION-kfp.pkg.dev``,
``https://artifactregistry.googleapis.com``) behind ``HTTPS_PROXY``, so that
``kfp.registry.RegistryClient`` and ``aiplatform.PipelineJob(template_path=...)`` run
unchanged; the Vertex AI stand-in is reached on 127.0.0.1, past the proxy.
"""

from __future__ import annotations

import importlib.util
import json
import os
import types
import urllib.request

import pytest
import yaml
from google.auth.credentials import AnonymousCredentials
from google.oauth2.credentials import Credentials
from kfp_standin_server import KfpStandIn
from registry_standin_server import RegistryStandIn
from vertex_standin_server import StorageStandIn, VertexStandIn

from tfopt import __version__, cli
from tfopt.client import follow, schedule, submit, templates
from tfopt.deploy import vertex
from tfopt.errors import ConfigError
from tfopt.pipelines import compile as compile_mod

pytestmark = pytest.mark.timeout(600)  # a hang guard: the first test pays the cold imports
PROJECT, REGION = "test-project", "us-central1"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


# ---------------------------------------------------------------- Kubeflow Pipelines
@pytest.fixture
def kfp_api(monkeypatch):
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    server = KfpStandIn()
    yield server
    server.stop()


def _kfp_params(tmp_path, host: str) -> str:
    doc = {"epochs": 2, "submit": {"target": "kfp", "host": host, "experiment": "nightly"}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_kfp_publish_then_submit_and_schedule_from_the_template(
    kfp_api, tmp_path, capsys, monkeypatch
):
    params = _kfp_params(tmp_path, kfp_api.url)
    assert cli.main(["publish", "--params", params]) == 0
    out = capsys.readouterr().out
    (pipeline,) = kfp_api.pipelines.values()
    (version,) = kfp_api.versions.values()
    assert pipeline.display_name == "tfopt-optimize"
    assert pipeline.description.startswith("Train a TensorFlow classifier")
    assert (
        version.display_name.startswith(f"{__version__}-")
        and len(version.display_name) == len(__version__) + 13
    )  # the tfopt version and 12 hex digits of the content's sha256
    assert version.pipeline_spec["pipelineInfo"]["name"] == "tfopt-optimize"
    assert f"published: kfp tfopt-optimize version {version.display_name}" in out
    assert f"--template tfopt-optimize@{version.display_name}" in out

    # the same content again: no version added, nothing uploaded
    uploads = kfp_api.paths().count("POST /apis/v2beta1/pipelines/upload_version")
    assert cli.main(["publish", "--params", params]) == 0
    assert "unchanged (already published)" in capsys.readouterr().out
    assert len(kfp_api.versions) == 1 and len(kfp_api.pipelines) == 1
    assert kfp_api.paths().count("POST /apis/v2beta1/pipelines/upload_version") == uploads

    # a run from the newest version: no pipeline spec is sent, only the version's ids
    assert cli.main(["submit", "--params", params, "--template", "tfopt-optimize"]) == 0
    (run,) = kfp_api.runs.values()
    assert run.pipeline_spec is None
    assert run.pipeline_version_reference.pipeline_id == pipeline.pipeline_id
    assert run.pipeline_version_reference.pipeline_version_id == version.pipeline_version_id
    assert run.runtime_config.parameters == {"epochs": 2}
    assert run.display_name.startswith("tfopt-optimize-")

    # a schedule from a named version
    template = f"tfopt-optimize@{version.display_name}"
    assert (
        cli.main(["schedule", "--params", params, "--cron", "@daily", "--template", template]) == 0
    )
    (rr,) = kfp_api.recurring.values()
    assert rr.pipeline_spec is None
    assert rr.pipeline_version_reference.pipeline_version_id == version.pipeline_version_id
    assert rr.trigger.cron_schedule.cron == "0 0 0 * * *"

    # new content (another default) is a new version, which "NAME" then means
    monkeypatch.setitem(compile_mod.CLUSTER_DEFAULTS["optimize"], "epochs", 3)
    done = templates.publish(submit.load_submit_config(params))
    assert done.created and len(kfp_api.versions) == 2
    newest = kfp_api.versions[done.version_id]
    assert (
        newest.pipeline_spec["root"]["inputDefinitions"]["parameters"]["epochs"]["defaultValue"]
        == 3
    )
    assert submit.submit_file(params, template="tfopt-optimize").run_id in kfp_api.runs
    last = list(kfp_api.runs.values())[-1]
    assert last.pipeline_version_reference.pipeline_version_id == done.version_id


def test_kfp_templates_that_do_not_exist_are_refused_before_any_run(kfp_api, tmp_path):
    params = _kfp_params(tmp_path, kfp_api.url)
    with pytest.raises(ConfigError, match="no pipeline named 'tfopt-optimize'.*tfopt publish"):
        submit.submit_file(params, template="tfopt-optimize")
    templates.publish(submit.load_submit_config(params))
    with pytest.raises(ConfigError, match="has no version named '0.0.0-nope'"):
        submit.submit_file(params, template="tfopt-optimize@0.0.0-nope")
    with pytest.raises(ConfigError, match="cannot change a published KFP template's caching"):
        submit.submit_file(params, template="tfopt-optimize", enable_caching=False)
    with pytest.raises(ConfigError, match="not allowed on KFP"):
        submit.submit_file(params, template="https://us-central1-kfp.pkg.dev/p/r/x/latest")
    assert kfp_api.runs == {}


def _trial_loops(spec: dict) -> dict[str, dict | None]:
    """Display name -> iterator policy of every ParallelFor in a pipeline spec's root DAG
    (a run's spec wraps it with the platform spec: ``{"pipeline_spec": ..., ...}``)."""
    spec = spec.get("pipeline_spec", spec)
    tasks = spec["root"]["dag"]["tasks"].values()
    return {
        t["taskInfo"]["name"]: t.get("iteratorPolicy") for t in tasks if "parameterIterator" in t
    }


def _with_submit(params: str, **settings) -> str:
    """The params file with ``settings`` added to its ``submit:`` section."""
    with open(params) as fh:
        doc = yaml.safe_load(fh)
    doc["submit"].update(settings)
    with open(params, "w") as fh:
        yaml.safe_dump(doc, fh)
    return params


def test_kfp_submit_and_publish_compile_the_search_fanout_when_asked(kfp_api, tmp_path, capsys):
    params = _kfp_params(tmp_path, kfp_api.url)
    # a run compiled here with the fan-out: the spec sent holds the trial loops and the limit
    args = ["submit", "--params", params, "--search-fanout", "--search-parallelism", "2"]
    assert cli.main(args) == 0
    (run,) = kfp_api.runs.values()
    loops = _trial_loops(run.pipeline_spec)
    assert {"prune-search", "channel-prune-search", "distill-search"} <= set(loops)
    assert all(policy == {"parallelismLimit": 2} for policy in loops.values())
    # without the flags the params file decides: its submit: section asks for the fan-out
    done = templates.publish(submit.load_submit_config(_with_submit(params, search_fanout=True)))
    published = _trial_loops(kfp_api.versions[done.version_id].pipeline_spec)
    assert published.keys() == loops.keys() and set(published.values()) == {None}  # no limit
    # the default compile has no loop: another content, another version of the same pipeline
    plain = templates.publish(submit.load_submit_config(params, search_fanout=False))
    assert plain.version_id != done.version_id and len(kfp_api.pipelines) == 1
    assert _trial_loops(kfp_api.versions[plain.version_id].pipeline_spec) == {}
    capsys.readouterr()


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"search_parallelism": 2}, "limits the search fan-out: set search_fanout: true"),
        ({"search_fanout": True, "search_parallelism": -1}, "integer >= 0"),
        ({"search_fanout": "yes"}, "expected true or false"),
        ({"search_fanout": True, "pipeline": "train"}, "has no search; only optimize"),
        ({"search_fanout": True, "template": "tfopt-optimize"}, "does not apply to a given"),
    ],
)
def test_bad_search_fanout_settings_are_refused_before_any_request(
    kfp_api, tmp_path, settings, match
):
    params = _with_submit(_kfp_params(tmp_path, kfp_api.url), **settings)
    with pytest.raises(ConfigError, match=match):
        submit.submit_file(params)
    assert kfp_api.paths() == []


# ---------------------------------------------------------------- Vertex AI
@pytest.fixture
def registry(monkeypatch):
    server = RegistryStandIn(PROJECT, REGION)
    monkeypatch.setenv("HTTPS_PROXY", server.proxy_url)
    monkeypatch.setenv("https_proxy", server.proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", server.cert_file)
    monkeypatch.setenv("SSL_CERT_FILE", server.cert_file)
    urllib.request.install_opener(urllib.request.build_opener())  # proxies from this env
    yield server
    urllib.request.install_opener(None)
    server.stop()


@pytest.fixture
def vertex_api(monkeypatch):
    server = VertexStandIn(PROJECT, REGION).start()
    for name in (*vertex.ENV_PROJECT, *vertex.ENV_REGION, *vertex.ENV_API_ENDPOINT):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.stop()


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


@pytest.fixture
def sdk_state():
    """aiplatform.init() sets process-wide defaults; give each test a fresh config."""
    from google.cloud.aiplatform import initializer

    config = initializer.global_config
    saved = dict(vars(config))
    vars(config).update(vars(initializer._Config()))
    yield
    vars(config).clear()
    vars(config).update(saved)


def _vertex_params(tmp_path, server) -> str:
    doc = {
        "epochs": 2,
        "submit": {
            "target": "vertex",
            "project": PROJECT,
            "region": REGION,
            "api_endpoint": server.address,
            "pipeline_root": "gs://bucket/root",
            "repository": "tfopt",
        },
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


@pytest.mark.usefixtures("sdk_state", "storage")
def test_vertex_publish_then_submit_and_schedule_from_the_registry(registry, vertex_api, tmp_path):
    params = _vertex_params(tmp_path, vertex_api)
    config = submit.load_submit_config(params)
    anon, token = AnonymousCredentials(), Credentials(token="stand-in")  # the registry's: a token
    done = templates.publish(config, ("nightly",), credentials=token)
    host = f"https://{REGION}-kfp.pkg.dev/{PROJECT}/tfopt"
    assert done.created and done.template == f"{host}/tfopt-optimize/latest"
    (version,) = registry.versions("tfopt-optimize")
    assert done.version == version and version.startswith("sha256:")
    assert registry.tags["tfopt-optimize"] == dict.fromkeys(
        (__version__, "latest", "nightly"), version
    )
    uploaded = yaml.safe_load(registry.packages["tfopt-optimize"][version])
    assert "---" not in registry.packages["tfopt-optimize"][version].decode()  # Vertex flavour
    assert uploaded["root"]["inputDefinitions"]["parameters"]["deploy_target"]["defaultValue"] == (
        "none"
    )

    # the same content again: no version added, its tags kept
    again = templates.publish(config, ("nightly",), credentials=token)
    assert not again.created and registry.versions("tfopt-optimize") == [version]
    assert [c for c in registry.calls if c[0] == "POST" and c[1].endswith("kfp.pkg.dev")] == [
        registry.calls[1]
    ]  # one upload in all (the first publish's; call 0 asked for the version)

    # a run and a schedule from the template: Vertex reads the pipeline from the registry
    result = submit.submit_file(params, {"width": 16}, credentials=anon, template=done.template)
    job = vertex_api.requests("CreatePipelineJob")[0].pipeline_job
    assert job.template_uri == done.template
    spec = type(job).to_dict(job)["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "tfopt-optimize"
    values = type(job.runtime_config).to_dict(job.runtime_config)["parameter_values"]
    assert values["epochs"] == 2 and values["width"] == 16
    assert result.name.startswith(
        f"projects/{PROJECT}/locations/{REGION}/pipelineJobs/tfopt-optimize-"
    )
    assert ("GET", f"{REGION}-kfp.pkg.dev", "/test-project/tfopt/tfopt-optimize/latest") in (
        registry.calls
    )

    schedule.create_schedule(params, cron="30 2 * * *", credentials=anon, template=done.template)
    inner = vertex_api.requests("CreateSchedule")[0].schedule.create_pipeline_job_request
    assert inner.pipeline_job.template_uri == done.template


@pytest.mark.usefixtures("sdk_state", "storage")
def test_submit_wait_follows_a_vertex_run_to_its_summary(vertex_api, tmp_path):
    from google.cloud import aiplatform_v1 as v1

    summary_file = tmp_path / "summary"
    summary_file.write_text(json.dumps({"selected": "tflite_int8", "blessed": True,
                                        "baseline": "baseline", "variants": []}))  # fmt: skip

    def on_get_job(job, reads):
        task = v1.PipelineTaskDetail
        job.job_detail.task_details.clear()
        job.job_detail.task_details.append(task(task_id=1, task_name=job.name, state=1))
        job.job_detail.task_details.append(
            task(task_id=2, parent_task_id=1, task_name="ingest", state=task.State.SUCCEEDED)
        )
        if reads == 1:
            job.state = v1.PipelineState.PIPELINE_STATE_RUNNING
            return
        select = task(task_id=3, parent_task_id=1, task_name="select", state=task.State.SUCCEEDED)
        select.outputs["summary"] = v1.PipelineTaskDetail.ArtifactList(
            artifacts=[v1.Artifact(uri=str(summary_file))]
        )
        job.job_detail.task_details.append(select)
        job.state = v1.PipelineState.PIPELINE_STATE_SUCCEEDED

    vertex_api.on_get_job = on_get_job
    params = _vertex_params(tmp_path, vertex_api)
    result = submit.submit_file(params, credentials=AnonymousCredentials())
    seen = []
    outcome = follow.follow(
        result, result.config, poll_s=0.01, on_task=seen.append, credentials=AnonymousCredentials()
    )
    assert [t.name for t in seen] == ["ingest", "select"]
    assert outcome.state == "succeeded" and outcome.selected == "tflite_int8"
    assert outcome.exit_code == follow.EXIT_BLESSED


def _trigger_module():
    path = os.path.join(ROOT, "examples", "vertex_trigger", "main.py")
    spec = importlib.util.spec_from_file_location("tfopt_trigger_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.usefixtures("sdk_state", "storage")
def test_the_event_trigger_starts_a_run_from_the_template(registry, vertex_api, tmp_path):
    from google.cloud import aiplatform

    config = submit.load_submit_config(_vertex_params(tmp_path, vertex_api))
    done = templates.publish(config, credentials=Credentials(token="stand-in"))
    trigger = _trigger_module()
    env = {
        "TFOPT_TEMPLATE": done.template,
        "TFOPT_PIPELINE_ROOT": "gs://bucket/root",
        "TFOPT_RUN_SERVICE_ACCOUNT": "runner@test-project.iam.gserviceaccount.com",
    }
    # where the function's SDK calls go (the stand-in speaks gRPC, the SDK's default)
    aiplatform.init(api_endpoint=vertex_api.address, api_transport="grpc")
    job = trigger.start_run("data-bucket", "incoming/Digits 2026.csv", env, AnonymousCredentials())
    (req,) = vertex_api.requests("CreatePipelineJob")
    assert req.parent == f"projects/{PROJECT}/locations/{REGION}"
    assert req.pipeline_job.template_uri == done.template
    assert req.pipeline_job.display_name == "tfopt-digits-2026-csv"
    assert req.pipeline_job.service_account == env["TFOPT_RUN_SERVICE_ACCOUNT"]
    values = type(req.pipeline_job.runtime_config).to_dict(req.pipeline_job.runtime_config)
    assert values["parameter_values"] == {"source": "gs://data-bucket/incoming/Digits 2026.csv"}
    assert job.resource_name == f"{req.parent}/pipelineJobs/{req.pipeline_job_id or job.name}"

    # the entry point ignores files that are not data
    monkey_env = types.SimpleNamespace(data={"bucket": "data-bucket", "name": "notes.txt"})
    trigger.on_upload(monkey_env)
    assert len(vertex_api.requests("CreatePipelineJob")) == 1
