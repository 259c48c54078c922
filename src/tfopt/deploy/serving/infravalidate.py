"""Infra validation (what TFX's InfraValidator does): can the serving runtime serve it?

The candidate is pushed (with warmup requests built from real test examples)
into a throwaway repository, loaded by the serving runtime (the local server,
which loads SavedModels and replays warmup exactly as TF Serving does), the
warmup requests are replayed over gRPC and the examples sent over REST, served
predictions are compared with offline predictions of the same SavedModel, and
batch-1 latency is measured. ``infra_blessed`` is True only if all of it works.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from tfopt.checks import check_float, check_int, check_str

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InfraValidationConfig:
    """How the candidate is checked.

    Attributes:
        model_name: name it is served under.
        num_examples: real examples recorded as warmup requests and replayed.
        latency_requests: batch-1 gRPC requests timed after warmup.
        atol: largest allowed |served - offline| of any output value.
        load_timeout_s: how long the runtime may take to load the version.
        check_rest: also send the examples over REST (row format).
    """

    model_name: str = "tfopt-model"
    num_examples: int = 16
    latency_requests: int = 50
    atol: float = 1e-5
    load_timeout_s: float = 120.0
    check_rest: bool = True

    def __post_init__(self):
        check_str("InfraValidationConfig", "model_name", self.model_name)
        check_int("InfraValidationConfig", "num_examples", self.num_examples, 1, 1000)
        check_int("InfraValidationConfig", "latency_requests", self.latency_requests, 0, 100_000)
        check_float("InfraValidationConfig", "atol", self.atol, 0.0, 1.0)
        check_float(
            "InfraValidationConfig",
            "load_timeout_s",
            self.load_timeout_s,
            0.0,
            86_400.0,
            low_open=True,
        )


@dataclass
class InfraValidationResult:
    infra_blessed: bool
    reason: str
    load_seconds: float = 0.0
    warmup_requests: int = 0
    requests_checked: int = 0
    max_abs_diff: float = float("nan")
    first_request_ms: float = float("nan")
    latency_ms_p50: float = float("nan")
    latency_ms_p99: float = float("nan")

    def to_dict(self) -> dict:
        return asdict(self)

    def metrics(self) -> dict:
        return {
            k: v
            for k, v in self.to_dict().items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }


def offline_predict(model_dir: str, examples: np.ndarray) -> np.ndarray:
    """``probabilities`` of the SavedModel's ``serving_default`` run in-process."""
    from tfopt._keras import tf

    fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    return fn(x=tf.constant(np.asarray(examples, np.float32)))["probabilities"].numpy()


def compare(served: np.ndarray, offline: np.ndarray, atol: float, what: str) -> float:
    """Max |served - offline|; raises AssertionError naming ``what`` when above ``atol``."""
    served, offline = np.asarray(served), np.asarray(offline)
    if served.shape != offline.shape:
        raise AssertionError(f"{what}: served shape {served.shape} != offline {offline.shape}")
    diff = float(np.max(np.abs(served - offline))) if served.size else 0.0
    if not np.isfinite(diff) or diff > atol:
        raise AssertionError(
            f"{what}: served predictions differ from offline by {diff:.3g} (> atol {atol:g})"
        )
    return diff


def infra_validate(
    model_dir: str, examples: np.ndarray, config: InfraValidationConfig = InfraValidationConfig()
) -> InfraValidationResult:
    """Load ``model_dir`` in the serving runtime and check it; never raises for a bad model."""
    from tfopt._keras import tf
    from tfopt.deploy.serving import client as clients
    from tfopt.deploy.serving import repository, server, warmup

    examples = np.asarray(examples, np.float32)[: config.num_examples]
    srv = None
    result = InfraValidationResult(False, "")
    with tempfile.TemporaryDirectory(prefix="tfopt-infraval-") as repo:
        try:
            offline = offline_predict(model_dir, examples)
            pushed = repository.push_model(
                model_dir, repo, config.model_name, warmup_examples=examples
            )
            requests = warmup.read_warmup(pushed.path)
            t0 = time.perf_counter()
            srv = server.ModelServer(repo, config.model_name, poll_seconds=3600).start()
            try:
                server.wait_available(
                    srv, config.model_name, pushed.version, timeout=config.load_timeout_s
                )
            except TimeoutError:
                status = srv.model_status(config.model_name).model_version_status
                detail = "; ".join(s.status.error_message for s in status if s.status.error_message)
                raise AssertionError(
                    f"the serving runtime did not load the model: {detail or 'timed out'}"
                ) from None
            result.load_seconds = time.perf_counter() - t0
            result.warmup_requests = len(requests)
            grpc_client = clients.GrpcClient(f"127.0.0.1:{srv.grpc_port}", timeout=30)
            try:
                diffs = []
                for i, req in enumerate(requests):
                    resp = grpc_client.predict_request(req)
                    got = tf.make_ndarray(resp.outputs["probabilities"])
                    diffs.append(
                        compare(
                            got, offline[i : i + len(got)], config.atol, f"gRPC warmup request {i}"
                        )
                    )
                if config.check_rest:
                    rest = clients.RestClient(f"http://127.0.0.1:{srv.rest_port}", timeout=30)
                    out = rest.predict(config.model_name, instances=examples)
                    diffs.append(
                        compare(
                            np.asarray(out["predictions"], np.float32),
                            offline,
                            config.atol,
                            "REST predict",
                        )
                    )
                    rest.close()
                result.requests_checked = len(diffs)
                result.max_abs_diff = max(diffs)
                times = []
                for i in range(max(config.latency_requests, 1)):
                    t = time.perf_counter()
                    grpc_client.predict(config.model_name, examples[i % len(examples)][None])
                    times.append((time.perf_counter() - t) * 1000)
                result.first_request_ms = times[0]
                result.latency_ms_p50 = float(np.percentile(times, 50))
                result.latency_ms_p99 = float(np.percentile(times, 99))
            finally:
                grpc_client.close()
            result.infra_blessed, result.reason = True, "ok"
        except Exception as exc:  # any failure means "not servable", with the reason
            result.infra_blessed = False
            result.reason = (
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, AssertionError) else str(exc)
            )
            log.warning("infra validation of %s failed: %s", model_dir, result.reason)
        finally:
            if srv is not None:
                srv.stop()
    return result
