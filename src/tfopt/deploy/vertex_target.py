"""Where Vertex AI calls go (project, region, API endpoint) and how they are made.

Also the GCP label rules (:func:`check_labels`) shared by the deployment and
by pipeline submission, the GAPIC clients (:class:`Clients`) and :func:`call`,
which turns an API failure into :class:`DeployError` naming the step.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence

from tfopt.errors import CloudError, ConfigError

# Environment variables read when a parameter is empty (first one set wins).
ENV_PROJECT = ("GOOGLE_CLOUD_PROJECT", "CLOUD_ML_PROJECT_ID")
ENV_REGION = ("GOOGLE_CLOUD_REGION", "CLOUD_ML_REGION")
ENV_SERVICE_ACCOUNT = ("TFOPT_SERVICE_ACCOUNT",)
ENV_API_ENDPOINT = ("TFOPT_VERTEX_API_ENDPOINT",)

_REGION_RE = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
_PROJECT_RE = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$|^[0-9]+$")
_LABEL_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")


class DeployError(CloudError):
    """A Vertex AI call failed or the deployment could not be completed."""


def env_value(names: Sequence[str]) -> str:
    """The first of the environment variables ``names`` that is set (stripped), else ``""``."""
    for name in names:
        if os.environ.get(name, "").strip():
            return os.environ[name].strip()
    return ""


def check_labels(owner: str, labels: Mapping[str, str]) -> None:
    """GCP label rules: lowercase keys/values, <= 63 characters, <= 64 labels."""
    if not isinstance(labels, Mapping) or len(labels) > 64:
        raise ConfigError(
            f"{owner}.labels={labels!r} is not allowed: expected a mapping of at most 64 labels"
        )
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_RE.match(key):
            raise ConfigError(
                f"{owner}.labels key {key!r} is not allowed: expected lowercase "
                "letters, digits, '_' or '-', starting with a letter, <= 63 chars"
            )
        if not isinstance(value, str) or not _LABEL_VALUE_RE.match(value):
            raise ConfigError(
                f"{owner}.labels[{key!r}]={value!r} is not allowed: expected "
                "lowercase letters, digits, '_' or '-', <= 63 chars"
            )


@dataclasses.dataclass(frozen=True)
class VertexTarget:
    """Where Vertex AI calls go. Empty fields are filled from the environment.

    Attributes:
        project: GCP project id (env ``GOOGLE_CLOUD_PROJECT`` / ``CLOUD_ML_PROJECT_ID``).
        region: Vertex region, e.g. ``us-central1`` (env ``GOOGLE_CLOUD_REGION`` /
            ``CLOUD_ML_REGION``).
        api_endpoint: ``host:port`` override of ``{region}-aiplatform.googleapis.com``
            (Private Service Connect, or a local stand-in; env ``TFOPT_VERTEX_API_ENDPOINT``).
    """

    project: str = ""
    region: str = ""
    api_endpoint: str = ""

    def __post_init__(self):
        for name in ("project", "region", "api_endpoint"):
            if not isinstance(getattr(self, name), str):
                raise ConfigError(
                    f"VertexTarget.{name}={getattr(self, name)!r} is not allowed: expected a string"
                )

    def resolve(self) -> VertexTarget:
        """Fill empty fields from the environment; fail naming what is missing."""
        project = self.project or env_value(ENV_PROJECT)
        region = self.region or env_value(ENV_REGION)
        endpoint = self.api_endpoint or env_value(ENV_API_ENDPOINT)
        if not project:
            raise ConfigError(
                "Vertex AI project is missing: set the 'project' parameter or "
                f"one of the environment variables {', '.join(ENV_PROJECT)}"
            )
        if not region:
            raise ConfigError(
                "Vertex AI region is missing: set the 'region' parameter or "
                f"one of the environment variables {', '.join(ENV_REGION)}"
            )
        if not _PROJECT_RE.match(project):
            raise ConfigError(
                f"VertexTarget.project={project!r} is not allowed: expected a "
                "GCP project id (6-30 lowercase letters, digits, '-') or number"
            )
        if not _REGION_RE.match(region) or region == "global":
            raise ConfigError(
                f"VertexTarget.region={region!r} is not allowed: expected a "
                "Vertex AI region like 'us-central1'"
            )
        return VertexTarget(project, region, endpoint)

    @property
    def host(self) -> str:
        """``host:port`` the API calls go to."""
        return self.api_endpoint or f"{self.region}-aiplatform.googleapis.com"

    @property
    def location_path(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def client_options(self) -> dict:
        return {"api_endpoint": self.host}


class Clients:
    """The three Vertex AI v1 GAPIC clients for one target."""

    def __init__(self, target: VertexTarget, credentials=None):
        from google.cloud import aiplatform_v1

        kwargs = {"credentials": credentials, "client_options": target.client_options()}
        self.models = aiplatform_v1.ModelServiceClient(**kwargs)
        self.endpoints = aiplatform_v1.EndpointServiceClient(**kwargs)
        self.predictions = aiplatform_v1.PredictionServiceClient(**kwargs)


def call(what: str, fn, *args, **kwargs):
    """Run one API call; turn google.api_core errors into DeployError naming the step."""
    from google.api_core import exceptions

    try:
        return fn(*args, **kwargs)
    except exceptions.GoogleAPICallError as exc:
        raise DeployError(f"Vertex AI {what} failed: {exc}") from exc
