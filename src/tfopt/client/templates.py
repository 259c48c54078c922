"""Published pipeline templates: ``tfopt publish``, and ``--template`` for submit and schedule.

A template is a compiled pipeline kept where a console finds it:

* **Kubeflow Pipelines**: a pipeline (``tfopt-optimize``) whose versions are named
  ``<tfopt version>-<first 12 hex digits of the YAML's sha256>``. Publishing creates the
  pipeline once, then uploads a version only for content it has not seen: the same
  compiled YAML published twice is one version. ``--template`` takes ``NAME`` (its newest
  version) or ``NAME@VERSION`` (a version name).
* **Vertex AI**: a package in an Artifact Registry KFP repository
  (``https://REGION-kfp.pkg.dev/PROJECT/REPO``), uploaded with
  ``kfp.registry.RegistryClient``. A version there is named by the content's sha256, so
  publishing the same YAML again adds no version; the tags (the tfopt version, ``latest``
  and any ``--tag``) are set or moved to it. ``--template`` takes the URI
  ``https://REGION-kfp.pkg.dev/PROJECT/REPO/tfopt-optimize/TAG`` (or ``.../sha256:...``),
  which ``aiplatform.PipelineJob(template_path=...)`` reads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile

from tfopt import __version__
from tfopt.errors import ConfigError

log = logging.getLogger(__name__)

AR_TEMPLATE = re.compile(
    r"^https://(?P<location>[\w-]+)-kfp\.pkg\.dev/(?P<project>[^/]+)/(?P<repo>[^/]+)/"
    r"(?P<package>[^/]+)/(?P<ref>[^/]+)$"
)
LATEST = "latest"


@dataclasses.dataclass
class Published:
    """What ``tfopt publish`` left on the target."""

    target: str
    name: str  # the KFP pipeline / the Artifact Registry package
    version: str  # KFP version name / sha256:... in Artifact Registry
    template: str  # what --template takes to start runs from it
    created: bool  # False: that content was already published
    version_id: str = ""
    tags: tuple[str, ...] = ()


def content_hash(path: str) -> str:
    """sha256 hex digest of a compiled pipeline file."""
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def version_name(digest: str) -> str:
    """A KFP version's name: the tfopt version and the content hash."""
    return f"{__version__}-{digest[:12]}"


def publish(config, tags: tuple[str, ...] = (), credentials=None) -> Published:
    """Compile ``config.pipeline`` for ``config.target`` and publish it (see the module)."""
    from tfopt.pipelines.compile import compile_pipeline, pipeline_function

    with tempfile.TemporaryDirectory(prefix="tfopt-publish-") as tmp:
        path = compile_pipeline(
            config.pipeline,
            os.path.join(tmp, f"{config.pipeline}.yaml"),
            **config.compile_options(),
        )
        name = pipeline_function(config.pipeline).component_spec.name
        if config.target == "kfp":
            description = pipeline_function(config.pipeline).description or ""
            return _publish_kfp(config, path, name, description)
        return _publish_vertex(config, path, name, tags, credentials)


# ---------------------------------------------------------------- Kubeflow Pipelines
def _name_filter(name: str) -> str:
    return json.dumps(
        {"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]}
    )


def _publish_kfp(config, path: str, name: str, description: str) -> Published:
    import contextlib
    import io

    import kfp_server_api

    from tfopt.client.kfp_api import _api_call, kfp_client

    client = kfp_client(config)
    digest = content_hash(path)
    wanted = version_name(digest)
    pipeline_id = _api_call("KFP find pipeline", client.get_pipeline_id, name)
    if pipeline_id is None:
        # kfp.Client has no "create pipeline" (its upload names the first version after the
        # pipeline): the v2beta1 PipelineService it holds creates one without a version
        pipeline = kfp_server_api.V2beta1Pipeline(
            display_name=name, description=description, namespace=config.namespace or None
        )
        created = _api_call(
            "KFP create pipeline",
            client._pipelines_api.pipeline_service_create_pipeline,
            pipeline=pipeline,
        )
        pipeline_id = created.pipeline_id
        log.info("created KFP pipeline %s (%s)", name, pipeline_id)
    found = _find_version(client, pipeline_id, wanted)
    if found is not None:
        template = f"{name}@{wanted}"
        return Published("kfp", name, wanted, template, False, found.pipeline_version_id)
    with contextlib.redirect_stdout(io.StringIO()):  # kfp.Client prints a link
        version = _api_call(
            "KFP upload pipeline version",
            client.upload_pipeline_version,
            path,
            wanted,
            pipeline_id=pipeline_id,
            description=f"tfopt {__version__}; content sha256:{digest}",
        )
    log.info("uploaded KFP pipeline version %s of %s", wanted, name)
    return Published("kfp", name, wanted, f"{name}@{wanted}", True, version.pipeline_version_id)


def _find_version(client, pipeline_id: str, name: str):
    from tfopt.client.kfp_api import _api_call

    resp = _api_call(
        "KFP list pipeline versions",
        client.list_pipeline_versions,
        pipeline_id,
        page_size=1,
        filter=_name_filter(name),
    )
    versions = [v for v in resp.pipeline_versions or [] if v.display_name == name]
    return versions[0] if versions else None


def kfp_template(client, template: str) -> tuple[str, str, str]:
    """``NAME``, ``NAME@VERSION`` or a version id -> (pipeline id, version id, pipeline name)."""
    from tfopt.client.kfp_api import _api_call

    name, _, wanted = template.partition("@")
    pipeline_id = _api_call("KFP find pipeline", client.get_pipeline_id, name)
    if pipeline_id is None:
        raise ConfigError(
            f"template {template!r}: no pipeline named {name!r} on the KFP host; "
            "publish it first (tfopt publish --target kfp)"
        )
    if wanted:
        found = _find_version(client, pipeline_id, wanted)
        if found is None:
            raise ConfigError(f"template {template!r}: {name!r} has no version named {wanted!r}")
        return pipeline_id, found.pipeline_version_id, name
    resp = _api_call(
        "KFP list pipeline versions",
        client.list_pipeline_versions,
        pipeline_id,
        page_size=1,
        sort_by="created_at desc",
    )
    if not resp.pipeline_versions:
        raise ConfigError(f"template {template!r}: {name!r} has no version; publish one first")
    return pipeline_id, resp.pipeline_versions[0].pipeline_version_id, name


# ---------------------------------------------------------------- Vertex AI
def registry_host(config) -> str:
    """The Artifact Registry KFP repository of ``config.repository`` (a name, or its URL)."""
    repo = config.repository
    if not repo:
        raise ConfigError(
            "submit.repository is missing: an Artifact Registry KFP repository, its name "
            "(in submit.project / submit.region) or https://REGION-kfp.pkg.dev/PROJECT/REPO"
        )
    if repo.startswith("https://"):
        if not re.match(r"^https://[\w-]+-kfp\.pkg\.dev/[^/]+/[^/]+/?$", repo):
            raise ConfigError(
                f"submit.repository={repo!r} is not allowed: expected "
                "https://REGION-kfp.pkg.dev/PROJECT/REPO"
            )
        return repo.rstrip("/")
    target = config.vertex_target()
    return f"https://{target.region}-kfp.pkg.dev/{target.project}/{repo}"


def _publish_vertex(config, path: str, name: str, tags, credentials) -> Published:
    import requests
    from kfp.registry import RegistryClient

    host = registry_host(config)
    client = RegistryClient(host=host, auth=credentials)
    digest = "sha256:" + content_hash(path)
    wanted = tuple(dict.fromkeys((__version__, LATEST, *tags)))  # in order, once each
    try:
        client.get_version(name, digest)
        created = False
    except requests.HTTPError as exc:
        if exc.response is None or exc.response.status_code != 404:
            raise _registry_error("get version", exc) from exc
        try:
            package, version = client.upload_pipeline(path, tags=list(wanted))
        except requests.RequestException as exc:
            raise _registry_error("upload", exc) from exc
        if (package, version) != (name, digest):
            log.warning("Artifact Registry named the upload %s/%s", package, version)
        created = True
    if not created:  # the content is there: point the tags at it
        _set_tags(client, name, digest, wanted)
    log.info("published %s/%s to %s (tags %s)", name, digest, host, ", ".join(wanted))
    return Published("vertex", name, digest, f"{host}/{name}/{LATEST}", created, tags=wanted)


def _set_tags(client, name: str, digest: str, tags) -> None:
    import requests

    try:
        current = {t["name"].rsplit("/", 1)[-1]: t["version"] for t in client.list_tags(name)}
        for tag in tags:
            if tag not in current:
                client.create_tag(name, digest, tag)
            elif not current[tag].endswith(f"/{digest}"):
                client.update_tag(name, digest, tag)
    except requests.RequestException as exc:
        raise _registry_error("set tags", exc) from exc


def _registry_error(what: str, exc: Exception):
    from tfopt.deploy.vertex import CloudError

    return CloudError(f"Artifact Registry {what} failed: {exc}")


def check_template(target: str, template: str) -> None:
    """What ``--template`` may be on ``target``; raises ``ConfigError`` saying what is."""
    if target == "vertex" and not (AR_TEMPLATE.match(template) or template.startswith("gs://")):
        raise ConfigError(
            f"submit.template={template!r} is not allowed on Vertex AI: expected "
            "https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE/TAG (tfopt publish prints it)"
        )
    if target == "kfp" and ("/" in template or not template.strip("@")):
        raise ConfigError(
            f"submit.template={template!r} is not allowed on KFP: expected a published "
            "pipeline's NAME, NAME@VERSION (tfopt publish prints it)"
        )


def template_name(target: str, template: str) -> str:
    """The pipeline name a template runs (a run's default display name)."""
    if target == "vertex":
        match = AR_TEMPLATE.match(template)
        return match.group("package") if match else "tfopt"
    return template.partition("@")[0]
