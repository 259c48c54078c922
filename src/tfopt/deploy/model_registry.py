"""Register a deployed model in the Kubeflow Model Registry (``model-registry`` client).

After a successful deploy the blessed model becomes a version of a registered model:
name, version (the serving version), URI, format and tfopt's figures as the version's
custom properties (accuracy, size, latency, dataset hash, pipeline run, parent version,
technique lineage). A version that exists already is left as it is and not added again,
as a push of identical content keeps its serving version.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any
from urllib.parse import urlparse

from tfopt import registry
from tfopt.checks import check_str
from tfopt.errors import ConfigError, TfoptError

log = logging.getLogger(__name__)

FORMATS = {"saved_model": ("tensorflow", "2"), "tflite": ("tflite", "1")}
TOKEN_HELP = (
    "the client sends the token in $KF_PIPELINES_SA_TOKEN_PATH, else the pod's service "
    "account token (/var/run/secrets/kubernetes.io/serviceaccount/token); give that "
    "service account access to the registry (e.g. a RoleBinding in its namespace)"
)


class RegistryError(TfoptError):
    """The Model Registry refused or could not be reached; the deploy is kept."""


@dataclasses.dataclass(frozen=True)
class RegistryConfig:
    """Where the Model Registry is and who registers.

    Attributes:
        host: The registry's REST address, http(s)://host[:port] (https and port 443
            when no scheme is given).
        author: Recorded as the author of each version (and owner of a new model).
    """

    host: str
    author: str = "tfopt"

    def __post_init__(self):
        check_str("RegistryConfig", "host", self.host)
        check_str("RegistryConfig", "author", self.author)
        parsed = urlparse(self.host if "://" in self.host else f"https://{self.host}")
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ConfigError(
                f"RegistryConfig.host={self.host!r} is not allowed: expected "
                "http(s)://host[:port], e.g. http://model-registry-service.kubeflow:8080"
            )

    def address(self) -> tuple[str, int, bool]:
        """(server address with scheme, port, secure)."""
        parsed = urlparse(self.host if "://" in self.host else f"https://{self.host}")
        secure = parsed.scheme == "https"
        port = parsed.port or (443 if secure else 8080)
        return f"{parsed.scheme}://{parsed.hostname}", port, secure


@dataclasses.dataclass
class Registration:
    """A registered version: ``created`` False when it existed already."""

    name: str
    version: str
    uri: str
    created: bool
    model_id: str = ""
    version_id: str = ""
    metadata: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def version_metadata(
    summary: dict, pipeline_run: str = "", parent_version: str = "", **extra: Any
) -> dict[str, Any]:
    """The selected model's figures from ``summary.json`` as registry custom properties.

    ``extra`` (scalars) are added as they are, e.g. ``serving_url``.
    """
    selected = summary.get("selected")
    record = next((v for v in summary.get("variants") or [] if v.get("name") == selected), None)
    if record is None:
        raise ConfigError(f"summary has no selected variant (selected={selected!r})")
    lineage = technique_lineage(summary, str(selected))
    meta: dict[str, Any] = {
        "variant": selected,
        "format": record.get("format"),
        "accuracy": record.get("accuracy"),
        "size_bytes": record.get("size_bytes"),
        "latency_ms_p50": record.get("latency_ms_p50"),
        "latency_ms_p99": record.get("latency_ms_p99"),
        "dataset_sha256": (summary.get("dataset") or {}).get("content_sha256"),
        "pipeline": summary.get("pipeline"),
        "pipeline_run": pipeline_run,
        "parent_version": parent_version,
        "technique_lineage": lineage,
        **extra,
    }
    # custom properties hold bool / int / float / str; a missing figure is left out
    return {k: v for k, v in meta.items() if isinstance(v, bool | int | float | str) and v != ""}


def technique_lineage(summary: dict, name: str) -> str:
    """``baseline>pruned>pqat_int8``: the chain of ``base`` entries of the summary's records
    (each compressed model's evaluation record names the model it was made from), else
    the registry's lineage when the techniques are loaded, else the name alone."""
    by_name = {v.get("name"): v for v in summary.get("variants") or []}
    chain = [name]
    while chain[-1] != registry.BASELINE and len(chain) <= len(by_name):
        base = (by_name.get(chain[-1]) or {}).get("base")
        if not base:
            try:
                return ">".join(reversed(registry.lineage(name)))
            except ConfigError:  # not a registered variant (the champion) or not loaded
                break
        chain.append(base)
    return ">".join(reversed(chain))


def _refused(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    if status in (401, 403):
        return int(status)
    if "user token must be provided" in str(exc):
        return 401
    return None


def _fail(cfg: RegistryConfig, what: str, exc: BaseException) -> RegistryError:
    status = _refused(exc)
    body = getattr(exc, "body", None) or getattr(exc, "reason", None) or exc
    if not status and "token" in str(exc).lower():
        return RegistryError(
            f"tfopt has no credentials for the Model Registry at {cfg.host} ({exc}): "
            f"{TOKEN_HELP}. The deploy itself is kept"
        )
    if status:
        return RegistryError(
            f"the Model Registry at {cfg.host} refused tfopt's credentials while {what} "
            f"(HTTP {status}: {str(body).strip()[:200]}): {TOKEN_HELP}. The deploy itself "
            "is kept: a re-run finds it in place and registers it"
        )
    return RegistryError(
        f"the Model Registry at {cfg.host} failed while {what}: {type(exc).__name__}: "
        f"{str(body).strip()[:300]}. The deploy itself is kept"
    )


def connect(cfg: RegistryConfig):
    """A ``model_registry.ModelRegistry`` (its constructor lists one model: a reachable,
    authorized registry); RegistryError otherwise."""
    from model_registry import ModelRegistry

    server, port, secure = cfg.address()
    try:
        return ModelRegistry(server, port, author=cfg.author, is_secure=secure)
    except Exception as exc:
        raise _fail(cfg, "connecting", exc) from None


def register_version(
    cfg: RegistryConfig,
    name: str,
    version: str,
    uri: str,
    model_format: str,
    metadata: dict[str, Any],
    description: str = "",
    client=None,
) -> Registration:
    """Register ``name`` ``version`` at ``uri`` unless that version exists already."""
    from model_registry.exceptions import StoreError

    if model_format not in FORMATS:
        raise ConfigError(
            f"model_format={model_format!r} is not allowed: expected one of {sorted(FORMATS)}"
        )
    client = client or connect(cfg)
    try:
        try:
            existing = client.get_model_version(name, version)
        except StoreError:  # no such registered model yet
            existing = None
        if existing is not None:
            log.info("Model Registry: %s version %s exists; nothing added", name, version)
            return Registration(name, version, uri, False, "", str(existing.id or ""), metadata)
        fmt, fmt_version = FORMATS[model_format]
        model = client.register_model(
            name,
            uri,
            model_format_name=fmt,
            model_format_version=fmt_version,
            version=version,
            version_description=description or None,
            metadata=metadata,
        )
        mv = client.get_model_version(name, version)
    except RegistryError:
        raise
    except Exception as exc:
        raise _fail(cfg, f"registering {name} version {version}", exc) from None
    log.info("Model Registry: registered %s version %s (%s)", name, version, uri)
    return Registration(
        name, version, uri, True, str(model.id or ""), str(getattr(mv, "id", "") or ""), metadata
    )
