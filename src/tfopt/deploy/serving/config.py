"""TF Serving configuration files: ``models.config``, batching parameters, monitoring.

``models.config`` is a ``ModelServerConfig`` text proto (the tensorflow-serving-api
protos), one entry per model with its version policy and version labels
(``stable`` / ``canary``). The batching and monitoring files are the text
protos ``tensorflow_model_server`` reads with ``--batching_parameters_file`` and
``--monitoring_config_file``; their protos are not in tensorflow-serving-api, so
they are written from the few fields used here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from tfopt import fsutil
from tfopt.checks import check_choice, check_int, check_str
from tfopt.errors import ConfigError

MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching_parameters.txt"
MONITORING_CONFIG = "monitoring.config"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
LABELS = ("stable", "canary")
POLICIES = ("latest", "all", "specific")


def _pb():
    from tensorflow_serving.config import model_server_config_pb2

    return model_server_config_pb2


@dataclass(frozen=True)
class ModelEntry:
    """One model of a ``ModelServerConfig``.

    Attributes:
        name: model name clients use (``/v1/models/<name>``).
        base_path: directory holding the numeric version directories.
        policy: ``latest`` (the ``num_versions`` highest), ``all``, or ``specific``
            (exactly ``versions``).
        num_versions: how many versions ``latest`` serves.
        versions: versions ``specific`` serves.
        labels: version labels, e.g. ``{"stable": 3, "canary": 4}``.
    """

    name: str
    base_path: str
    policy: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()
    labels: tuple[tuple[str, int], ...] = ()

    def __post_init__(self):
        check_str("ModelEntry", "name", self.name)
        check_str("ModelEntry", "base_path", self.base_path)
        check_choice("ModelEntry", "policy", self.policy, POLICIES)
        check_int("ModelEntry", "num_versions", self.num_versions, 1, 1000)
        object.__setattr__(self, "versions", tuple(sorted(set(self.versions))))
        labels = dict(self.labels)
        object.__setattr__(self, "labels", tuple(sorted(labels.items())))
        for v in self.versions:
            check_int("ModelEntry", "versions", v, 1)
        if self.policy == "specific" and not self.versions:
            raise ConfigError(
                "ModelEntry.versions=() is not allowed with policy 'specific': "
                "expected at least one version"
            )
        for label, v in labels.items():
            check_str("ModelEntry", "labels", label)
            check_int("ModelEntry", f"labels[{label!r}]", v, 1)
            if self.policy == "specific" and v not in self.versions:
                raise ConfigError(
                    f"ModelEntry.labels[{label!r}]={v} is not allowed: TF Serving "
                    f"only labels loaded versions {list(self.versions)}"
                )

    @property
    def label_map(self) -> dict[str, int]:
        return dict(self.labels)

    def aspired(self, available: list[int]) -> list[int]:
        """The versions this policy serves out of those present on disk, ascending."""
        available = sorted(set(available))
        if self.policy == "all":
            return available
        if self.policy == "specific":
            return [v for v in available if v in self.versions]
        return available[-self.num_versions :]


def to_proto(entries: list[ModelEntry]):
    """``ModelServerConfig`` proto for ``entries``."""
    cfg = _pb().ModelServerConfig()
    for e in entries:
        m = cfg.model_config_list.config.add()
        m.name, m.base_path, m.model_platform = e.name, e.base_path, "tensorflow"
        if e.policy == "latest":
            m.model_version_policy.latest.num_versions = e.num_versions
        elif e.policy == "all":
            m.model_version_policy.all.SetInParent()
        else:
            m.model_version_policy.specific.versions.extend(e.versions)
        for label, v in e.labels:
            m.version_labels[label] = v
    return cfg


def from_proto(cfg) -> list[ModelEntry]:
    entries = []
    for m in cfg.model_config_list.config:
        which = m.model_version_policy.WhichOneof("policy_choice")
        kwargs: dict[str, Any] = {}
        if which == "specific":
            kwargs = {
                "policy": "specific",
                "versions": tuple(m.model_version_policy.specific.versions),
            }
        elif which == "all":
            kwargs = {"policy": "all"}
        elif which == "latest":
            kwargs = {"num_versions": m.model_version_policy.latest.num_versions or 1}
        entries.append(
            ModelEntry(
                name=m.name, base_path=m.base_path, labels=tuple(m.version_labels.items()), **kwargs
            )
        )
    return entries


def format_model_config(entries: list[ModelEntry]) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(to_proto(entries))


def parse_model_config(text: str) -> list[ModelEntry]:
    from google.protobuf import text_format

    try:
        cfg = text_format.Parse(text, _pb().ModelServerConfig())
    except text_format.ParseError as exc:
        raise ConfigError(f"models.config is not a ModelServerConfig text proto: {exc}") from None
    return from_proto(cfg)


def read_model_config(path: str) -> list[ModelEntry]:
    """Entries of a ``models.config`` file; ``[]`` when it does not exist."""
    if not fsutil.exists(path):
        return []
    opener = fsutil._gfile().GFile if fsutil.is_remote(path) else open
    with opener(path) as fh:
        return parse_model_config(fh.read())


def write_model_config(path: str, entries: list[ModelEntry]) -> str:
    """Write ``entries`` atomically as a ``models.config`` text proto."""
    with fsutil.atomic_file(path) as fh:
        fh.write(format_model_config(entries))
    return path


def find_entry(entries: list[ModelEntry], name: str) -> ModelEntry | None:
    return next((e for e in entries if e.name == name), None)


def upsert_entry(path: str, entry: ModelEntry) -> list[ModelEntry]:
    """Replace (or add) the entry named ``entry.name`` in the file at ``path``."""
    from tfopt.deploy.serving import repository  # the lock lives with the repository layout

    with repository.repo_lock(os.path.dirname(path) or "."):
        entries = [e for e in read_model_config(path) if e.name != entry.name] + [entry]
        entries.sort(key=lambda e: e.name)
        write_model_config(path, entries)
    return entries


@dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching (``--enable_batching --batching_parameters_file``).

    Attributes:
        max_batch_size: largest batch the server forms.
        batch_timeout_micros: how long a partial batch waits for more requests.
        max_enqueued_batches: queue bound; requests past it fail with UNAVAILABLE.
        num_batch_threads: threads running batches (usually the CPU count).
        allowed_batch_sizes: optional ascending sizes to pad to, the last equal to
            ``max_batch_size``.
    """

    max_batch_size: int = 32
    batch_timeout_micros: int = 1000
    max_enqueued_batches: int = 100
    num_batch_threads: int = 4
    allowed_batch_sizes: tuple[int, ...] = ()

    def __post_init__(self):
        check_int("BatchingConfig", "max_batch_size", self.max_batch_size, 1, 1 << 16)
        check_int(
            "BatchingConfig", "batch_timeout_micros", self.batch_timeout_micros, 0, 10_000_000
        )
        check_int("BatchingConfig", "max_enqueued_batches", self.max_enqueued_batches, 1, 1_000_000)
        check_int("BatchingConfig", "num_batch_threads", self.num_batch_threads, 1, 1024)
        sizes = tuple(self.allowed_batch_sizes)
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise ConfigError(
                f"BatchingConfig.allowed_batch_sizes={sizes!r} is not allowed: "
                f"expected ascending sizes ending with max_batch_size="
                f"{self.max_batch_size}"
            )


def format_batching_config(cfg: BatchingConfig = BatchingConfig()) -> str:
    """``BatchingParameters`` text proto (wrapper fields use ``{ value: N }``)."""
    lines = [
        f"max_batch_size {{ value: {cfg.max_batch_size} }}",
        f"batch_timeout_micros {{ value: {cfg.batch_timeout_micros} }}",
        f"max_enqueued_batches {{ value: {cfg.max_enqueued_batches} }}",
        f"num_batch_threads {{ value: {cfg.num_batch_threads} }}",
    ]
    lines += [f"allowed_batch_sizes: {s}" for s in cfg.allowed_batch_sizes]
    if cfg.allowed_batch_sizes:
        lines.append("pad_variable_length_inputs: true")
    return "\n".join(lines) + "\n"


def format_monitoring_config(path: str = PROMETHEUS_PATH) -> str:
    """``MonitoringConfig`` text proto exposing Prometheus metrics on the REST port."""
    if not path.startswith("/"):
        raise ConfigError(
            f"prometheus path {path!r} is not allowed: expected a path starting with '/'"
        )
    return f'prometheus_config {{\n  enable: true\n  path: "{path}"\n}}\n'


def write_server_configs(
    directory: str, entries: list[ModelEntry], batching: BatchingConfig = BatchingConfig()
) -> dict[str, str]:
    """Write the three files into ``directory``; returns {file name: path}."""
    out = {}
    for name, text in (
        (MODELS_CONFIG, format_model_config(entries)),
        (BATCHING_CONFIG, format_batching_config(batching)),
        (MONITORING_CONFIG, format_monitoring_config()),
    ):
        path = os.path.join(directory, name)
        with fsutil.atomic_file(path) as fh:
            fh.write(text)
        out[name] = path
    return out
