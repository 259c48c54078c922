"""What the gRPC and REST front ends need from a model server (:class:`Backend`).

The front ends (``grpc_api.py``, ``rest.py``) take any object with these members;
:class:`tfopt.deploy.serving.server.ModelServer` is tfopt's. Its own module so that the
front ends and the server import it rather than each other.
"""

from __future__ import annotations

import threading
from typing import Protocol

from tfopt.deploy.serving.servable import Servable


class RequestMetrics:
    """Request counters and latency sums in Prometheus' text format."""

    def __init__(self):
        self._lock = threading.Lock()
        self._count: dict[tuple[str, str, str], int] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}

    def record(self, model: str, api: str, status: str, seconds: float) -> None:
        with self._lock:
            key = (model, api, status)
            self._count[key] = self._count.get(key, 0) + 1
            s = self._latency.setdefault((model, api), [0.0, 0])
            s[0] += seconds * 1e6
            s[1] += 1

    def render(self) -> str:
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        with self._lock:
            for (model, api, status), n in sorted(self._count.items()):
                lines.append(
                    f':tensorflow:serving:request_count{{model_name="{model}",'
                    f'entrypoint="{api}",status="{status}"}} {n}'
                )
            lines.append("# TYPE :tensorflow:serving:request_latency summary")
            for (model, api), (total, count) in sorted(self._latency.items()):
                labels = f'model_name="{model}",API="{api}"'
                lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {total:.1f}")
                lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {count}")
        return "\n".join(lines) + "\n"


class Backend(Protocol):
    """The server as the front ends see it: resolve a request, answer a status, count."""

    metrics: RequestMetrics
    max_request_bytes: int

    def resolve(
        self, name: str, version: int | None = None, label: str | None = None
    ) -> Servable: ...

    def model_status(self, name: str, version: int | None = None, label: str | None = None):
        """``GetModelStatusResponse`` for a model (all versions known) or one version."""
