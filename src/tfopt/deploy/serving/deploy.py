"""Deploy to a TF Serving repository: push, label, smoke test, roll back on failure.

The repository root holds ``models.config`` (version policy and labels of every
model) beside the model directories. A deploy pushes the model as a new
version, points the label (``stable`` by default, or ``canary``) at it, keeps
the previous ``stable`` version loaded for rollback, and smoke-tests the
labelled version over gRPC and REST. If the smoke test fails, the labels and
policy are restored (``stable`` back on the previous version) and the deploy
fails with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt import fsutil
from tfopt.checks import check_choice, check_float, check_int, check_str
from tfopt.deploy.serving import config as serving_config
from tfopt.deploy.serving import repository, rollback
from tfopt.errors import ConfigError, TfoptError

log = logging.getLogger(__name__)


class DeployError(TfoptError):
    """The smoke test failed; the repository was rolled back."""


@dataclass(frozen=True)
class DeployConfig:
    """How a model is deployed and smoke-tested.

    Attributes:
        model_name: name it is served under.
        label: label moved to the new version: ``stable`` or ``canary``.
        keep_previous: keep the previous ``stable`` version loaded (instant rollback).
        smoke_examples: real examples sent in the smoke test.
        atol: largest allowed |served - offline| in the smoke test.
        host: address of the local server started for the smoke test.
        grpc_target, rest_url: smoke-test an already running server (e.g. the
            Kubernetes Service) instead of starting a local one; both or neither.
        timeout_s: how long the new version may take to become available.
    """

    model_name: str = "tfopt-model"
    label: str = "stable"
    keep_previous: bool = True
    smoke_examples: int = 8
    atol: float = 1e-5
    host: str = "127.0.0.1"
    grpc_target: str = ""
    rest_url: str = ""
    timeout_s: float = 120.0

    def __post_init__(self):
        check_str("DeployConfig", "model_name", self.model_name)
        try:
            repository.check_model_name(self.model_name, "DeployConfig.model_name")
        except TfoptError as exc:
            raise ConfigError(str(exc)) from None
        check_choice("DeployConfig", "label", self.label, serving_config.LABELS)
        check_int("DeployConfig", "smoke_examples", self.smoke_examples, 1, 1000)
        check_float("DeployConfig", "atol", self.atol, 0.0, 1.0)
        check_float("DeployConfig", "timeout_s", self.timeout_s, 0.0, 86_400.0, low_open=True)
        if bool(self.grpc_target) != bool(self.rest_url):
            raise ConfigError(
                "DeployConfig.grpc_target/rest_url: give both (an existing server) or neither "
                "(a local server)"
            )


@dataclass
class DeployResult:
    model_base_path: str
    model_name: str
    version: int
    previous_version: int | None
    created: bool
    grpc_port: int
    rest_port: int
    smoke_test: str  # "passed" | "failed"
    reason: str = ""
    rolled_back: bool = False
    checks: dict = field(default_factory=dict)
    rollback_version: int | None = None  # kept loaded; stable moves back to it on failure
    rollback_skipped: list = field(default_factory=list)  # earlier versions unfit, and why

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        """The ``serving`` entry of ``summary.json``."""
        return {
            k: getattr(self, k)
            for k in (
                "model_base_path",
                "model_name",
                "version",
                "grpc_port",
                "rest_port",
                "smoke_test",
            )
        }


def config_path(model_base_path: str) -> str:
    root = model_base_path.rstrip("/")
    return (
        f"{root}/{serving_config.MODELS_CONFIG}"
        if fsutil.is_remote(root)
        else os.path.join(root, serving_config.MODELS_CONFIG)
    )


def smoke_test(
    grpc_target: str,
    rest_url: str,
    model_name: str,
    version: int,
    label: str,
    examples: np.ndarray,
    offline: np.ndarray,
    atol: float,
) -> dict:
    """Status, gRPC Predict and REST predict of ``label`` -> ``version``; raises AssertionError."""
    from tfopt.deploy.serving import client as clients
    from tfopt.deploy.serving.infravalidate import compare

    checks = {}
    with clients.GrpcClient(grpc_target, timeout=30) as g:
        state = g.status(model_name, version=version).get(version)
        if state != "AVAILABLE":
            raise AssertionError(f"gRPC GetModelStatus: version {version} is {state}")
        pred = g.predict(model_name, examples, label=label)
        if pred.version is not None and pred.version > version:
            # a concurrent, later deploy has taken the label since ours: not our failure;
            # smoke-test our own version directly
            pred = g.predict(model_name, examples, version=version)
        if pred.version != version:
            raise AssertionError(
                f"gRPC Predict on label {label!r} answered version "
                f"{pred.version}, expected {version}"
            )
        probs = pred.outputs["probabilities"]
        checks["grpc_max_abs_diff"] = compare(probs, offline, atol, "gRPC Predict")
        if not np.allclose(probs.sum(axis=-1), 1.0, atol=1e-3):
            raise AssertionError("gRPC Predict: probabilities do not sum to 1")
    rest = clients.RestClient(rest_url, timeout=30)
    try:
        status = rest.status(model_name, version=version)
        states = {s["version"]: s["state"] for s in status["model_version_status"]}
        if states.get(str(version)) != "AVAILABLE":
            raise AssertionError(
                f"REST model status: version {version} is {states.get(str(version))}"
            )
        out = rest.predict(model_name, instances=examples, version=version)
        checks["rest_max_abs_diff"] = compare(
            np.asarray(out["predictions"], np.float32), offline, atol, "REST predict"
        )
    finally:
        rest.close()
    return checks


def deploy(
    model_dir: str,
    model_base_path: str,
    examples: np.ndarray,
    config: DeployConfig = DeployConfig(),
    raise_on_failure: bool = True,
) -> DeployResult:
    """Push ``model_dir``, label it, smoke-test it; roll back and raise if that fails.

    Args:
        model_dir: SavedModel with ``serving_default`` (input ``x``, output ``probabilities``).
        model_base_path: repository root (local or ``gs://``).
        examples: real feature rows (warmup records and smoke requests).
        config: DeployConfig.
        raise_on_failure: raise DeployError after rolling back (else return
            the result with ``smoke_test="failed"``).
    """
    name = config.model_name
    examples = np.asarray(examples, np.float32)
    cfg_path = config_path(model_base_path)
    push = _push_and_relabel(model_dir, model_base_path, examples, config, cfg_path)
    pushed, target = push.pushed, push.target
    result = DeployResult(
        model_base_path, name, pushed.version, push.previous, pushed.created, -1, -1, "failed"
    )
    result.rollback_version, result.rollback_skipped = target, push.skipped
    log.info(
        "deploying %s version %d; rollback target: %s",
        name,
        pushed.version,
        f"version {target}" if target is not None else "none",
    )
    smoke = examples[: config.smoke_examples]
    with contextlib.ExitStack() as servers:  # a local server stops after any rollback
        try:
            result.checks = _smoke_test_pushed(
                model_dir, model_base_path, config, pushed.version, smoke, result, servers
            )
            result.smoke_test = "passed"
            with repository.repo_lock(model_base_path):
                rollback.mark_verified(model_base_path, name, pushed.version)
            log.info(
                "deployed %s version %d (%s); smoke test passed", name, pushed.version, config.label
            )
        except Exception as exc:
            result.reason = (
                str(exc) if isinstance(exc, AssertionError) else f"{type(exc).__name__}: {exc}"
            )
            _rollback(cfg_path, name, push.old_entry, push.written, pushed)
            result.rolled_back = True
            log.error(
                "smoke test of %s version %d failed (%s); rolled back to %s",
                name,
                pushed.version,
                result.reason,
                target,
            )
    if result.smoke_test != "passed" and raise_on_failure:
        raise DeployError(
            f"deploy of {name} version {pushed.version} failed the smoke test: "
            f"{result.reason}; stable label rolled back to "
            f"{'version ' + str(target) if target else 'nothing'}"
            + (f" (skipped: {'; '.join(push.skipped)})" if push.skipped else "")
        )
    return result


@dataclass
class _Push:
    """What a deploy changed in the repository, and what undoes it."""

    pushed: repository.PushResult
    previous: int | None  # the version ``stable`` was on
    target: int | None  # the version kept loaded for rollback
    skipped: list  # earlier versions unfit as rollback targets, and why
    old_entry: serving_config.ModelEntry | None  # restored by a rollback
    written: serving_config.ModelEntry  # this deploy's entry in models.config


def _push_and_relabel(
    model_dir: str, model_base_path: str, examples: np.ndarray, config: DeployConfig, cfg_path: str
) -> _Push:
    """Push the model as a new version and move ``config.label`` onto it, keeping the
    rollback target loaded.

    One step under the repository lock, so concurrent deploys get distinct versions and
    neither loses the other's ``models.config`` edit.
    """
    name = config.model_name
    with repository.repo_lock(model_base_path):
        old_entry = serving_config.find_entry(serving_config.read_model_config(cfg_path), name)
        old_labels = old_entry.label_map if old_entry else {}
        previous = old_labels.get("stable")
        pushed = repository.push_model(model_dir, model_base_path, name, warmup_examples=examples)
        # the version kept loaded for rollback: verified and intact, never a broken one
        target, skipped = rollback.rollback_target(
            model_base_path,
            name,
            [
                previous,
                *sorted(old_entry.versions if old_entry else (), reverse=True),
                *sorted(rollback.verified_versions(model_base_path, name), reverse=True),
            ],
            exclude=pushed.version,
        )
        for why in skipped:
            log.warning("%s: not a rollback target: %s", name, why)
        if target != previous and old_entry is not None:
            # a failed smoke test restores the old entry: with stable on the target
            old_entry = _with_stable(old_entry, target)
        labels = {**old_labels, config.label: pushed.version}
        versions = set(labels.values())
        if target is not None and config.keep_previous:
            versions.add(target)
        base = repository.model_dir(model_base_path, name)
        written = serving_config.ModelEntry(
            name,
            base,
            policy="specific",
            versions=tuple(sorted(versions)),
            labels=tuple(labels.items()),
        )
        serving_config.upsert_entry(cfg_path, written)
    return _Push(pushed, previous, target, skipped, old_entry, written)


def _smoke_test_pushed(
    model_dir: str,
    model_base_path: str,
    config: DeployConfig,
    version: int,
    smoke: np.ndarray,
    result: DeployResult,
    servers: contextlib.ExitStack,
) -> dict:
    """:func:`smoke_test` of ``version`` on the configured server, or on a local one that
    ``servers`` stops (its ports go to ``result``)."""
    from tfopt.deploy.serving import server as serving_server
    from tfopt.deploy.serving.infravalidate import offline_predict

    name = config.model_name
    offline = offline_predict(model_dir, smoke)
    if config.grpc_target:
        grpc_target, rest_url = config.grpc_target, config.rest_url
    else:
        srv = servers.enter_context(
            serving_server.ModelServer(model_base_path, name, host=config.host, poll_seconds=1.0)
        )
        serving_server.wait_available(srv, name, version, timeout=config.timeout_s)
        result.grpc_port, result.rest_port = srv.grpc_port, srv.rest_port
        host = serving_server._host_port(config.host)
        grpc_target, rest_url = f"{host}:{srv.grpc_port}", f"http://{host}:{srv.rest_port}"
    return smoke_test(
        grpc_target, rest_url, name, version, config.label, smoke, offline, config.atol
    )


def _with_stable(entry, version: int | None):
    """``entry`` with ``stable`` on ``version`` (removed when None) and that version loaded."""
    labels = {k: v for k, v in entry.label_map.items() if k != "stable"}
    if version is not None:
        labels["stable"] = version
    return serving_config.ModelEntry(
        entry.name,
        entry.base_path,
        policy="specific",
        versions=tuple(sorted(set(labels.values()))) or tuple(entry.versions),
        labels=tuple(labels.items()),
    )


def _rollback(cfg_path: str, name: str, old_entry, written, pushed: repository.PushResult) -> None:
    """Undo this deploy's edit of ``models.config``; keep edits other deploys made since."""
    with repository.repo_lock(os.path.dirname(cfg_path) or "."):
        current = serving_config.find_entry(serving_config.read_model_config(cfg_path), name)
        if current == written:  # nobody changed it since: restore exactly what was there
            if old_entry is not None:
                serving_config.upsert_entry(cfg_path, old_entry)
                return
            entries = [e for e in serving_config.read_model_config(cfg_path) if e.name != name]
            serving_config.write_model_config(cfg_path, entries)
            if pushed.created:  # first deploy of this model: nothing may serve it
                fsutil.remove(pushed.path)
            return
        if current is None:
            return
        # Another deploy relabelled meanwhile: move back only the labels still on our version.
        old_labels = old_entry.label_map if old_entry is not None else {}
        labels = {
            k: (old_labels[k] if v == pushed.version else v)
            for k, v in current.label_map.items()
            if v != pushed.version or k in old_labels
        }
        versions = (set(current.versions) - {pushed.version}) | set(labels.values())
        if versions:
            serving_config.upsert_entry(
                cfg_path,
                serving_config.ModelEntry(
                    name,
                    current.base_path,
                    policy="specific",
                    versions=tuple(sorted(versions)),
                    labels=tuple(labels.items()),
                ),
            )


def deploy_local(
    model_dir: str,
    model_base_path: str,
    model_name: str,
    examples: np.ndarray,
    label: str = "stable",
) -> dict:
    """Push, serve locally on free loopback ports, smoke-test over gRPC and REST, stop.

    Returns the ``serving`` entry of ``summary.json``: ``model_base_path``,
    ``model_name``, ``version``, ``grpc_port``, ``rest_port``, ``smoke_test``
    (``"passed"`` or ``"failed"``; on failure the labels were rolled back).
    """
    result = deploy(
        model_dir,
        model_base_path,
        examples,
        DeployConfig(model_name=model_name, label=label),
        raise_on_failure=False,
    )
    return result.summary()


def write_k8s_manifests(
    directory: str,
    model_base_path: str,
    model_name: str,
    variant: str = "cpu",
    namespace: str = "default",
    replicas: int = 1,
) -> dict[str, str]:
    """Validated Kubernetes manifests serving the repository's current policy and labels."""
    from tfopt.deploy.serving import k8s

    entry = serving_config.find_entry(
        serving_config.read_model_config(config_path(model_base_path)), model_name
    )
    versions = entry.versions if entry is not None and entry.policy == "specific" else ()
    labels = entry.labels if entry is not None else ()
    return k8s.write_manifests(
        directory,
        k8s.K8sConfig(
            model_name=model_name,
            model_base_path=model_base_path,
            variant=variant,
            namespace=namespace,
            replicas=replicas,
            versions=versions,
            labels=labels,
        ),
    )
