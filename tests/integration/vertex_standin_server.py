"""A local Vertex AI stand-in: a gRPC server speaking google.cloud.aiplatform.v1.

It serves the ModelService, EndpointService, PredictionService,
PipelineService and ScheduleService methods tfopt and the aiplatform SDK
call, with request/response messages (de)serialised by the SDK's own
``aiplatform_v1`` proto classes, and it enforces the API's rules on traffic
splits (so a wrong split is rejected here as Vertex would). Long-running
operations come back already done. Every request is recorded in ``calls``
for tests to assert on.

The GAPIC clients only open TLS channels, so the server uses a throw-away
self-signed certificate for 127.0.0.1, which this module adds to gRPC's
default root store (``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``, keeping the roots
already configured) when imported, before any TLS channel exists in the
process (pytest imports test modules before running any test). Tests pass
``google.auth.credentials.AnonymousCredentials``; no real credentials are used.

``StorageStandIn`` answers the one Cloud Storage call ``PipelineJob.submit``
makes (does the pipeline-root bucket exist?) via ``STORAGE_EMULATOR_HOST``.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import tempfile
import threading
from concurrent import futures

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.cloud import aiplatform_v1 as v1
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, empty_pb2


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vertex-standin")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


CERT_PEM, KEY_PEM = _self_signed()


def _trust_standin_certificate() -> None:
    """Add CERT_PEM to the roots gRPC loads (once per process, at the first TLS channel)."""
    var = "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"
    bundle = b""
    if os.environ.get(var) and os.path.isfile(os.environ[var]):
        with open(os.environ[var], "rb") as fh:  # keep whatever roots were configured
            bundle = fh.read().rstrip() + b"\n"
    path = os.path.join(tempfile.mkdtemp(prefix="vertex-standin-"), "roots.pem")
    with open(path, "wb") as fh:
        fh.write(bundle + CERT_PEM)
    os.environ[var] = path


_trust_standin_certificate()


def _op(name: str, response=None) -> operations_pb2.Operation:
    op = operations_pb2.Operation(name=name, done=True)
    packed = any_pb2.Any()
    packed.Pack(type(response).pb(response) if response is not None else empty_pb2.Empty())
    op.response.CopyFrom(packed)
    return op


def healthy_model(instances: list) -> list:
    """A classifier's answer: one 10-class probability row per instance."""
    return [[0.1] * 10 for _ in instances]


class VertexStandIn:
    """In-process aiplatform v1 server. ``serve[artifact_uri]`` decides predictions."""

    def __init__(self, project: str = "test-project", region: str = "us-central1"):
        self.location = f"projects/{project}/locations/{region}"
        self.calls: list[tuple[str, object]] = []
        self.models: dict[str, v1.Model] = {}  # "…/models/ID@VERSION" -> Model
        self.endpoints: dict[str, v1.Endpoint] = {}
        self.pipeline_jobs: dict[str, v1.PipelineJob] = {}
        self.schedules: dict[str, v1.Schedule] = {}
        self.serve = {}  # artifact_uri -> callable(instances) -> predictions (or raises)
        # called with (job, how many times it was read) before each GetPipelineJob: a test
        # moves the job along (state, task details) as Vertex AI would
        self.on_get_job = None
        self._job_reads: dict[str, int] = {}
        self._ids = iter(range(1000, 10**6))
        self._predictions = 0
        self._lock = threading.Lock()
        self._server = None
        self.port = 0

    # ------------------------------------------------------------ plumbing
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> VertexStandIn:
        services: dict[str, dict] = {}
        for full, (req_cls, resp_ser, fn) in self._methods().items():
            service, method = full.split("/")
            services.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
                self._recorded(method, fn),
                request_deserializer=req_cls.deserialize,
                response_serializer=resp_ser,
            )
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        for service, handlers in services.items():
            self._server.add_generic_rpc_handlers(
                (
                    grpc.method_handlers_generic_handler(
                        f"google.cloud.aiplatform.v1.{service}", handlers
                    ),
                )
            )
        self.port = self._server.add_secure_port(
            "127.0.0.1:0", grpc.ssl_server_credentials([(KEY_PEM, CERT_PEM)])
        )
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.stop(grace=None)

    def _recorded(self, method, fn):
        def handler(request, context):
            with self._lock:
                self.calls.append((method, request))
                return fn(request, context)

        return handler

    def methods_called(self) -> list[str]:
        return [m for m, _ in self.calls]

    def requests(self, method: str) -> list:
        return [r for m, r in self.calls if m == method]

    def _id(self) -> str:
        return str(next(self._ids))

    def _methods(self) -> dict:
        ser = lambda cls: cls.serialize  # noqa: E731
        lro = operations_pb2.Operation.SerializeToString
        return {
            "ModelService/UploadModel": (v1.UploadModelRequest, lro, self.upload_model),
            "ModelService/GetModel": (v1.GetModelRequest, ser(v1.Model), self.get_model),
            "ModelService/ListModels": (
                v1.ListModelsRequest,
                ser(v1.ListModelsResponse),
                self.list_models,
            ),
            "ModelService/ListModelVersions": (
                v1.ListModelVersionsRequest,
                ser(v1.ListModelVersionsResponse),
                self.list_model_versions,
            ),
            "EndpointService/CreateEndpoint": (v1.CreateEndpointRequest, lro, self.create_endpoint),
            "EndpointService/GetEndpoint": (
                v1.GetEndpointRequest,
                ser(v1.Endpoint),
                self.get_endpoint,
            ),
            "EndpointService/ListEndpoints": (
                v1.ListEndpointsRequest,
                ser(v1.ListEndpointsResponse),
                self.list_endpoints,
            ),
            "EndpointService/DeployModel": (v1.DeployModelRequest, lro, self.deploy_model),
            "EndpointService/UndeployModel": (v1.UndeployModelRequest, lro, self.undeploy_model),
            "EndpointService/UpdateEndpoint": (
                v1.UpdateEndpointRequest,
                ser(v1.Endpoint),
                self.update_endpoint,
            ),
            "PredictionService/Predict": (v1.PredictRequest, ser(v1.PredictResponse), self.predict),
            "PipelineService/CreatePipelineJob": (
                v1.CreatePipelineJobRequest,
                ser(v1.PipelineJob),
                self.create_pipeline_job,
            ),
            "PipelineService/GetPipelineJob": (
                v1.GetPipelineJobRequest,
                ser(v1.PipelineJob),
                self.get_pipeline_job,
            ),
            "ScheduleService/CreateSchedule": (
                v1.CreateScheduleRequest,
                ser(v1.Schedule),
                self.create_schedule,
            ),
            "ScheduleService/GetSchedule": (
                v1.GetScheduleRequest,
                ser(v1.Schedule),
                self.get_schedule,
            ),
            "ScheduleService/ListSchedules": (
                v1.ListSchedulesRequest,
                ser(v1.ListSchedulesResponse),
                self.list_schedules,
            ),
            "ScheduleService/DeleteSchedule": (v1.DeleteScheduleRequest, lro, self.delete_schedule),
        }

    @staticmethod
    def _display_filter(flt: str) -> str | None:
        if flt.startswith('display_name="') and flt.endswith('"'):
            return flt[len('display_name="') : -1]
        return None

    # ------------------------------------------------------------ models
    def add_model(self, display_name: str, artifact_uri: str) -> str:
        """Pre-existing model version 1; returns its resource name."""
        name = f"{self.location}/models/{self._id()}"
        self.models[f"{name}@1"] = v1.Model(
            name=name, display_name=display_name, artifact_uri=artifact_uri, version_id="1"
        )
        return name

    def upload_model(self, req, context):
        if req.parent != self.location:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad parent {req.parent}")
        if not req.model.container_spec.image_uri:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "container_spec.image_uri required")
        if req.parent_model:
            versions = [k for k in self.models if k.split("@")[0] == req.parent_model]
            if not versions:
                context.abort(grpc.StatusCode.NOT_FOUND, f"{req.parent_model} not found")
            name, version = req.parent_model, str(len(versions) + 1)
        else:
            name, version = f"{self.location}/models/{self._id()}", "1"
        model = v1.Model(req.model)
        model.name, model.version_id = name, version
        self.models[f"{name}@{version}"] = model
        return _op(
            f"{name}/operations/{self._id()}",
            v1.UploadModelResponse(model=name, model_version_id=version),
        )

    def get_model(self, req, context):
        key = (
            req.name
            if "@" in req.name
            else max((k for k in self.models if k.split("@")[0] == req.name), default=None)
        )
        if key not in self.models:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{req.name} not found")
        return self.models[key]

    def list_models(self, req, context):
        want = self._display_filter(req.filter)
        latest = {}
        for m in self.models.values():
            if want is None or m.display_name == want:
                latest[m.name] = m
        return v1.ListModelsResponse(models=list(latest.values()))

    def list_model_versions(self, req, context):
        versions = [m for k, m in self.models.items() if k.split("@")[0] == req.name]
        if not versions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{req.name} not found")
        return v1.ListModelVersionsResponse(models=versions)

    # ------------------------------------------------------------ endpoints
    def create_endpoint(self, req, context):
        ep = v1.Endpoint(req.endpoint)
        ep.name = f"{self.location}/endpoints/{self._id()}"
        self.endpoints[ep.name] = ep
        return _op(f"{ep.name}/operations/{self._id()}", ep)

    def _endpoint(self, name, context) -> v1.Endpoint:
        if name not in self.endpoints:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{name} not found")
        return self.endpoints[name]

    def get_endpoint(self, req, context):
        return self._endpoint(req.name, context)

    def list_endpoints(self, req, context):
        want = self._display_filter(req.filter)
        return v1.ListEndpointsResponse(
            endpoints=[e for e in self.endpoints.values() if want is None or e.display_name == want]
        )

    @staticmethod
    def _check_split(split: dict, ids: set, context, allow_empty: bool) -> None:
        if not split and allow_empty:
            return
        unknown = set(split) - ids
        if unknown:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"traffic_split names unknown deployed models {sorted(unknown)}",
            )
        if sum(split.values()) != 100:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"traffic_split must sum to 100, got {dict(split)}",
            )

    def deploy_model(self, req, context):
        ep = self._endpoint(req.endpoint, context)
        if req.deployed_model.model not in self.models:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{req.deployed_model.model} not found")
        new_id = self._id()
        old_ids = {d.id for d in ep.deployed_models}
        split = dict(req.traffic_split)
        self._check_split(split, old_ids | {"0"}, context, allow_empty=False)
        dm = v1.DeployedModel(req.deployed_model)
        dm.id = new_id
        ep.deployed_models.append(dm)
        ep.traffic_split = {(new_id if k == "0" else k): v for k, v in split.items() if v}
        return _op(f"{ep.name}/operations/{self._id()}", v1.DeployModelResponse(deployed_model=dm))

    def undeploy_model(self, req, context):
        ep = self._endpoint(req.endpoint, context)
        ids = [d.id for d in ep.deployed_models]
        if req.deployed_model_id not in ids:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{req.deployed_model_id} is not deployed")
        remaining = set(ids) - {req.deployed_model_id}
        split = (
            dict(req.traffic_split)
            if req.traffic_split
            else {k: v for k, v in ep.traffic_split.items() if k != req.deployed_model_id}
        )
        self._check_split(split, remaining, context, allow_empty=not remaining)
        keep = [d for d in ep.deployed_models if d.id != req.deployed_model_id]
        del ep.deployed_models[:]
        ep.deployed_models.extend(keep)
        ep.traffic_split = {k: v for k, v in split.items() if v}
        return _op(f"{ep.name}/operations/{self._id()}", v1.UndeployModelResponse())

    def update_endpoint(self, req, context):
        ep = self._endpoint(req.endpoint.name, context)
        if list(req.update_mask.paths) != ["traffic_split"]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "stand-in updates traffic_split only")
        split = dict(req.endpoint.traffic_split)
        self._check_split(split, {d.id for d in ep.deployed_models}, context, allow_empty=False)
        ep.traffic_split = {k: v for k, v in split.items() if v}
        return ep

    def predict(self, req, context):
        ep = self._endpoint(req.endpoint, context)
        split = sorted(ep.traffic_split.items())
        if not split:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no model serves this endpoint")
        pos = (self._predictions * 37) % 100  # deterministic, visits every percent in 100 calls
        self._predictions += 1
        acc, dm_id = 0, split[-1][0]
        for candidate, pct in split:
            acc += pct
            if pos < acc:
                dm_id = candidate
                break
        dm = next(d for d in ep.deployed_models if d.id == dm_id)
        uri = self.models[dm.model].artifact_uri
        instances = v1.PredictRequest.to_dict(req)["instances"]
        try:
            predictions = self.serve.get(uri, healthy_model)(instances)
        except Exception as exc:
            context.abort(grpc.StatusCode.INTERNAL, f"model server error: {exc}")
        resp = v1.PredictResponse(deployed_model_id=dm_id, model=dm.model.split("@")[0])
        resp.predictions.extend(predictions)
        return resp

    # ------------------------------------------------------------ pipelines, schedules
    def create_pipeline_job(self, req, context):
        job = v1.PipelineJob(req.pipeline_job)
        job.name = f"{req.parent}/pipelineJobs/{req.pipeline_job_id or self._id()}"
        job.state = v1.PipelineState.PIPELINE_STATE_PENDING
        self.pipeline_jobs[job.name] = job
        return job

    def get_pipeline_job(self, req, context):
        if req.name not in self.pipeline_jobs:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{req.name} not found")
        self._job_reads[req.name] = self._job_reads.get(req.name, 0) + 1
        if self.on_get_job is not None:
            self.on_get_job(self.pipeline_jobs[req.name], self._job_reads[req.name])
        return self.pipeline_jobs[req.name]

    def create_schedule(self, req, context):
        s = v1.Schedule(req.schedule)
        s.name = f"{req.parent}/schedules/{self._id()}"
        s.state = v1.Schedule.State.ACTIVE
        self.schedules[s.name] = s
        return s

    def get_schedule(self, req, context):
        if req.name not in self.schedules:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{req.name} not found")
        return self.schedules[req.name]

    def list_schedules(self, req, context):
        return v1.ListSchedulesResponse(
            schedules=[s for n, s in self.schedules.items() if n.startswith(req.parent + "/")]
        )

    def delete_schedule(self, req, context):
        if self.schedules.pop(req.name, None) is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"{req.name} not found")
        return _op(f"{req.name}/operations/{self._id()}")


class StorageStandIn:
    """Answers ``GET /storage/v1/b/<bucket>`` (bucket exists) for STORAGE_EMULATOR_HOST.

    The SDK then checks the bucket's project number against the project's
    (a Resource Manager call; tests patch that one lookup to ``project_number``).
    """

    def __init__(self, project_number: str = "123456789"):
        self.requests: list[str] = []
        self.project_number = project_number
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append(self.path)
                bucket = self.path.split("/storage/v1/b/", 1)[-1].split("?")[0].split("/")[0]
                body = json.dumps(
                    {
                        "name": bucket,
                        "location": "US-CENTRAL1",
                        "projectNumber": outer.project_number,
                    }
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()
