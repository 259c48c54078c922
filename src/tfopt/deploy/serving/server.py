"""A local model server speaking TF Serving's gRPC and REST APIs.

Production serving is the official ``tensorflow/serving`` image; this server is
for development, CI, infra validation and smoke tests where that binary is not
available. It serves the same repository layout (``<base>/<name>/<version>/``,
zero-padded version names included), ``models.config``, the same protos
(``tensorflow_serving.apis``), the same REST paths and JSON shapes, and the same
status codes and error messages for bad requests, so the same clients and checks
work against both.

The pieces: ``manager.py`` (version discovery, policies, labels, config reload,
load / unload), ``servable.py`` (one loaded SavedModel and its signatures),
``grpc_api.py`` (PredictionService / ModelService), ``rest.py`` and
``rest_codec.py`` (REST handler and JSON formats), ``backend.py`` (what those front
ends need from the server, and the request metrics); this module keeps the
``ModelServer`` facade the CLI, infra validation and deploy use.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent import futures
from http.server import ThreadingHTTPServer

import grpc

from tfopt.deploy.serving import config as serving_config
from tfopt.deploy.serving import grpc_api, repository, rest
from tfopt.deploy.serving.backend import RequestMetrics
from tfopt.deploy.serving.manager import STATE, VersionManager
from tfopt.deploy.serving.servable import Servable
from tfopt.deploy.serving.status import (
    DEFAULT_SIGNATURE,
    ServingError,
    host_port,
    invalid,
    not_found,
)
from tfopt.errors import ConfigError

# isort: off
from tensorflow_serving.apis import get_model_status_pb2
# isort: on

log = logging.getLogger(__name__)

DEFAULT_MAX_REQUEST_BYTES = 16 << 20
MAX_REQUEST_BYTES_LIMIT = 2 << 30  # gRPC's own ceiling
_host_port = host_port  # deploy.py's name for it
__all__ = ["DEFAULT_SIGNATURE", "ModelServer", "Servable", "ServingError", "wait_available"]


class ModelServer:
    """Serve ``<model_base_path>/<name>/<version>/`` over gRPC and REST.

    Args:
        model_base_path: repository root (the tensorflow/serving image's
            ``MODEL_BASE_PATH``); a model is at ``<root>/<name>`` unless the
            config gives its ``base_path``.
        model_names: models to serve (the config may add more).
        config_file: ``models.config`` (``model_config_list``) giving models, base
            paths, version policy and labels (re-read at every poll); default
            ``<root>/models.config`` when it exists, else the latest version of each
            model.
        host: address to bind (loopback by default).
        grpc_port, rest_port: 0 picks a free port; -1 disables that API.
        poll_seconds: how often the base paths and config file are re-read.
        max_request_bytes: largest request body accepted (REST and gRPC).
        grpc_workers: threads answering gRPC calls.
        max_load_retries: retries of a version that fails to load before it is given
            up (TF Serving's ``--max_num_load_retries``, default 5); its status then
            stays END with the error, and the serving version stays up.
        load_retry_interval_s: wait between load retries (TF Serving: 60 s).
    """

    def __init__(
        self,
        model_base_path: str,
        model_names: list[str] | str,
        config_file: str | None = None,
        host: str = "127.0.0.1",
        grpc_port: int = 0,
        rest_port: int = 0,
        poll_seconds: float = 2.0,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        grpc_workers: int = 32,
        max_load_retries: int = 5,
        load_retry_interval_s: float = 60.0,
    ):
        if isinstance(model_names, str):
            model_names = [model_names]
        for n in model_names:
            repository.check_model_name(n)
        if not 1 <= int(max_request_bytes) <= MAX_REQUEST_BYTES_LIMIT:
            raise ConfigError(
                f"max_request_bytes={max_request_bytes} is not allowed: expected "
                f"1..{MAX_REQUEST_BYTES_LIMIT}"
            )
        if not 0 <= int(max_load_retries) <= 1000 or load_retry_interval_s < 0:
            raise ConfigError(
                f"max_load_retries={max_load_retries}, load_retry_interval_s="
                f"{load_retry_interval_s} are not allowed: expected 0..1000 and "
                f">= 0"
            )
        self.model_base_path = model_base_path
        self.config_file = config_file or os.path.join(
            model_base_path, serving_config.MODELS_CONFIG
        )
        self.manager = VersionManager(
            model_base_path,
            list(model_names),
            self.config_file,
            int(max_load_retries),
            float(load_retry_interval_s),
        )
        self.host = host
        self.poll_seconds = poll_seconds
        self.max_request_bytes = max_request_bytes
        self._stop = threading.Event()
        self._want_grpc, self._want_rest = grpc_port, rest_port
        self._grpc_workers = grpc_workers
        self._grpc = None
        self._http: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self.grpc_port = -1
        self.rest_port = -1
        self.metrics = RequestMetrics()

    @property
    def _models(self):
        return self.manager.models

    @property
    def max_load_retries(self) -> int:
        return self.manager.max_load_retries

    @property
    def load_retry_interval_s(self) -> float:
        return self.manager.load_retry_interval_s

    # ----------------------------------------------------------- lifecycle
    def start(self) -> ModelServer:
        """Load what is on disk, then open the ports and start polling."""
        self.poll_once()
        if self._want_grpc >= 0:
            self._start_grpc()
        if self._want_rest >= 0:
            self._start_rest()
        t = threading.Thread(target=self._poll_loop, name="tfopt-serving-poll", daemon=True)
        t.start()
        self._threads.append(t)
        log.info(
            "serving %s from %s: gRPC %s:%d, REST %s:%d",
            sorted(self._models),
            self.model_base_path,
            self.host,
            self.grpc_port,
            self.host,
            self.rest_port,
        )
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace=1.0).wait()
            self._grpc = None
        for t in self._threads:
            t.join(timeout=10)
        self._threads.clear()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def request_stop(self) -> None:
        """Make :meth:`wait` return (safe from a signal handler)."""
        self._stop.set()

    def wait(self) -> None:
        """Block until :meth:`stop` is called (the CLI's foreground loop)."""
        while not self._stop.wait(0.5):
            pass

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_seconds):
            try:
                self.poll_once()
            except Exception:  # keep serving what is loaded
                log.exception("poll of %s failed", self.model_base_path)

    def poll_once(self) -> None:
        """Re-read config and version directories; load new versions, then unload old ones."""
        self.manager.poll_once()

    # ------------------------------------------------------------- core API
    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request names, or the NOT_FOUND / INVALID_ARGUMENT TF Serving gives."""
        return self.manager.resolve(name, version, label)

    def model_status(self, name: str, version: int | None = None, label: str | None = None):
        """``GetModelStatusResponse`` for a model (all versions known) or one version."""
        states, labels = self.manager.states(name)
        if label:
            if label not in labels:
                raise invalid(f"Unrecognized servable version label: {label}")
            version = labels[label]
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        resp = get_model_status_pb2.GetModelStatusResponse()
        for v in sorted(states, reverse=True):
            state, code, message = states[v]
            s = resp.model_version_status.add()
            s.version = v
            s.state = STATE[state]
            s.status.error_code = code
            s.status.error_message = message
        return resp

    def signature_def_map(self, servable: Servable):
        return grpc_api.signature_def_map(servable)

    def rest(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        """Answer one REST call in process; returns (HTTP status, JSON object)."""
        return rest.handle(self, method, path, body)

    def grpc_predict(self, request):
        return grpc_api.predict(self, request)

    # ----------------------------------------------------------- transports
    def _start_grpc(self) -> None:
        server = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=self._grpc_workers, thread_name_prefix="tfopt-grpc"
            ),
            options=[
                ("grpc.max_receive_message_length", self.max_request_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.so_reuseport", 0),
            ],
        )
        grpc_api.add_services(server, self)
        port = server.add_insecure_port(f"{host_port(self.host)}:{self._want_grpc}")
        if not port:
            raise OSError(f"cannot bind gRPC to {self.host}:{self._want_grpc}")
        server.start()
        self._grpc, self.grpc_port = server, port

    def _start_rest(self) -> None:
        handler = type("Handler", (rest.RestHandler,), {"server_ref": self})
        httpd = ThreadingHTTPServer((self.host, self._want_rest), handler)
        httpd.daemon_threads = True
        self._http, self.rest_port = httpd, httpd.server_address[1]
        t = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="tfopt-rest",
            daemon=True,
        )
        t.start()
        self._threads.append(t)


def wait_available(
    server: ModelServer, name: str, version: int | None = None, timeout: float = 120.0
) -> Servable:
    """Poll until ``name`` (or one version of it) is served; raise TimeoutError otherwise.

    The default is deploy's and infra validation's load timeout: loading a SavedModel
    and replaying its warmup on a busy CPU host can take over a minute.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return server.resolve(name, version)
        except ServingError:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{name} version {version or 'latest'} not available after {timeout:.0f}s"
                ) from None
            server.poll_once()
            time.sleep(0.05)
