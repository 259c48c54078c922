"""Submit a compiled tfopt pipeline to Kubeflow Pipelines or Vertex AI Pipelines.

One params file serves local runs, submissions and schedules: its top-level
keys are pipeline parameters (read by :func:`tfopt.client.params.load_params`, which
ignores the reserved sections), and the optional ``submit:`` section says
where to send the run::

    epochs: 20
    submit:
      target: vertex              # or kfp
      project: my-project         # vertex (else $GOOGLE_CLOUD_PROJECT)
      region: us-central1         # vertex (else $GOOGLE_CLOUD_REGION)
      pipeline_root: gs://my-bucket/tfopt
      service_account: runner@my-project.iam.gserviceaccount.com
      network: projects/123/global/networks/vpc   # optional
      labels: {team: ml}
      # kfp: host: http://ml-pipeline-ui.kubeflow, experiment: tfopt, namespace: ...

Everything is validated (settings, parameter names and types, the compiled
package, the host being reachable) before anything is created remotely.
Credentials are never read from the params file: Vertex uses Application
Default Credentials, KFP the client's own mechanisms (in-cluster service
account token, IAP environment variables).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from typing import Any

from tfopt.checks import check_choice, check_reachable, check_str
from tfopt.client.kfp_api import _api_call, kfp_client
from tfopt.deploy.vertex import ENV_SERVICE_ACCOUNT, VertexTarget, check_labels
from tfopt.errors import ConfigError
from tfopt.pipelines import fanout_rules

log = logging.getLogger(__name__)

TARGETS = ("kfp", "vertex")
ENV_KFP_HOST = "KF_PIPELINES_ENDPOINT"
_SECRET_WORDS = re.compile(
    r"token|secret|password|passwd|credential|api_key|apikey|key_file|"
    r"private_key",
    re.IGNORECASE,
)


def refuse_credentials(section: str, values: Mapping[str, Any]) -> None:
    """Fail when a settings section tries to carry credentials."""
    for key in values:
        if _SECRET_WORDS.search(str(key)):
            raise ConfigError(
                f"{section}.{key}: credentials do not belong in params files. Vertex AI uses "
                "Application Default Credentials (gcloud auth application-default login or a "
                "service account); KFP uses its client's auth (in-cluster token, IAP env vars); "
                "secrets for steps come from Kubernetes secrets (tfopt.components._secrets)"
            )


@dataclasses.dataclass(frozen=True)
class SubmitConfig:
    """The ``submit:`` section of a params file.

    Attributes:
        target: ``kfp`` (a Kubeflow Pipelines API) or ``vertex`` (Vertex AI Pipelines).
        pipeline: tfopt pipeline name (``tfopt.pipelines.compile.PIPELINES``).
        package: Pre-compiled pipeline YAML ("" = compile ``pipeline`` now).
        template: A published template to start from instead of compiling
            (``tfopt publish`` prints it; :mod:`tfopt.client.templates`): KFP ``NAME`` or
            ``NAME@VERSION``; Vertex ``https://REGION-kfp.pkg.dev/PROJECT/REPO/PACKAGE/TAG``.
        repository: Vertex: the Artifact Registry KFP repository ``tfopt publish`` uploads
            to, its name (in ``project`` / ``region``) or its https:// URL.
        run_name: Run display name ("" = ``<pipeline>-<UTC time>``).
        enable_caching: Override the compiled caching setting (None = keep it).
        host: KFP API URL ("" = env ``KF_PIPELINES_ENDPOINT``).
        namespace: KFP multi-user namespace ("" = the client's default).
        experiment: KFP experiment (created if absent).
        project, region, api_endpoint: Vertex target (see :class:`tfopt.vertex.VertexTarget`).
        pipeline_root: Where run artifacts go (required for Vertex: ``gs://...``).
        service_account: Vertex: GCP service account e-mail the run uses (env
            ``TFOPT_SERVICE_ACCOUNT``); KFP: Kubernetes service account.
        network: Vertex: VPC network to peer the run with.
        labels: Vertex: labels on the pipeline job.
        search_fanout: Compile each technique's search trials as parallel tasks
            (``dsl.ParallelFor``; ``pipelines/search_fanout.py``) instead of a bisection
            inside its one step. Only when tfopt compiles the pipeline here.
        search_parallelism: With ``search_fanout``: at most this many trials of one search
            at a time (0 = no limit).
    """

    target: str = "kfp"
    pipeline: str = "optimize"
    package: str = ""
    template: str = ""
    repository: str = ""
    run_name: str = ""
    enable_caching: bool | None = None
    host: str = ""
    namespace: str = ""
    experiment: str = "tfopt"
    project: str = ""
    region: str = ""
    api_endpoint: str = ""
    pipeline_root: str = ""
    service_account: str = ""
    network: str = ""
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    search_fanout: bool = False
    search_parallelism: int = 0

    def __post_init__(self):
        owner = "submit"
        check_choice(owner, "target", self.target, TARGETS)
        check_str(owner, "pipeline", self.pipeline)
        check_str(owner, "experiment", self.experiment)
        for name in (
            "package",
            "template",
            "repository",
            "run_name",
            "host",
            "namespace",
            "project",
            "region",
            "api_endpoint",
            "pipeline_root",
            "service_account",
            "network",
        ):
            check_str(owner, name, getattr(self, name), allow_empty=True)
        if self.enable_caching not in (None, True, False):
            raise ConfigError(
                f"submit.enable_caching={self.enable_caching!r} is not allowed: "
                "expected true, false or null"
            )
        check_labels(owner, self.labels)
        if self.host and not re.match(r"^https?://[^/\s]+", self.host):
            raise ConfigError(
                f"submit.host={self.host!r} is not allowed: expected an "
                "http(s):// URL of the KFP API"
            )
        if self.network and not re.match(r"^projects/[^/]+/global/networks/[^/]+$", self.network):
            raise ConfigError(
                f"submit.network={self.network!r} is not allowed: expected "
                "projects/PROJECT_NUMBER/global/networks/NAME"
            )
        if self.package and not os.path.isfile(self.package):
            raise ConfigError(f"submit.package={self.package!r}: file not found")
        if self.package and self.template:
            raise ConfigError("submit: give a package or a template, not both")
        self._check_fanout()

    def _check_fanout(self) -> None:
        if self.search_fanout not in (True, False):
            raise ConfigError(
                f"submit.search_fanout={self.search_fanout!r} is not allowed: expected true or "
                "false"
            )
        n = self.search_parallelism
        if isinstance(n, bool) or not isinstance(n, int):
            raise ConfigError(
                f"submit.search_parallelism={n!r} is not allowed: expected an integer >= 0 "
                "(0 = no limit)"
            )
        names = fanout_rules.Names(
            "submit.search_fanout", "submit.search_parallelism", "set search_fanout: true"
        )
        fanout_rules.check(self.pipeline, self.search_fanout, n, names)
        if self.search_fanout and (self.package or self.template):
            raise ConfigError(
                "submit.search_fanout is a compile setting: it does not apply to a given "
                "package or template (compile that with tfopt compile --search-fanout)"
            )

    def compile_options(self) -> dict[str, Any]:
        """The ``compile_pipeline`` keywords these settings ask for."""
        return {
            "target": "vertex" if self.target == "vertex" else "kubeflow",
            "search_fanout": self.search_fanout,
            "search_parallelism": self.search_parallelism,
        }

    def with_overrides(self, **changes) -> SubmitConfig:
        """A copy with the non-None ``changes`` applied (command-line flags)."""
        changes = {k: v for k, v in changes.items() if v is not None}
        return dataclasses.replace(self, **changes) if changes else self

    def kfp_host(self) -> str:
        host = self.host or os.environ.get(ENV_KFP_HOST, "")
        if not host:
            raise ConfigError(
                "KFP host is missing: set submit.host (e.g. "
                f"http://localhost:8080) or ${ENV_KFP_HOST}"
            )
        return host.rstrip("/")

    def vertex_target(self) -> VertexTarget:
        return VertexTarget(self.project, self.region, self.api_endpoint).resolve()

    def vertex_service_account(self) -> str:
        account = self.service_account or os.environ.get(ENV_SERVICE_ACCOUNT[0], "")
        if account and "@" not in account:
            raise ConfigError(
                f"submit.service_account={account!r} is not allowed: expected "
                "a service account e-mail"
            )
        return account

    def check_target(self) -> None:
        """Everything a submission to this target needs, checked locally."""
        if self.template:
            from tfopt.client.templates import check_template

            check_template(self.target, self.template)
        if self.target == "kfp":
            self.kfp_host()
            if self.template and self.enable_caching is not None:
                raise ConfigError(
                    "submit.enable_caching cannot change a published KFP template's caching "
                    "(it is compiled in): leave it null, or submit the package instead"
                )
            return
        self.vertex_target()
        self.vertex_service_account()
        if not self.pipeline_root.startswith("gs://"):
            raise ConfigError(
                f"submit.pipeline_root={self.pipeline_root!r} is not allowed: "
                "Vertex AI Pipelines needs a gs:// directory for run artifacts"
            )


def read_sections(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``submit`` and ``schedule`` sections of a params file (empty when absent)."""
    from tfopt.client.params import read_params_file

    raw = read_params_file(path) if path else {}
    out = []
    for name in ("submit", "schedule"):
        section = raw.get(name) or {}
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: '{name}' must be a mapping of settings")
        refuse_credentials(name, section)
        out.append(section)
    return out[0], out[1]


def load_submit_config(path: str | None, **overrides) -> SubmitConfig:
    """``SubmitConfig`` from the params file's ``submit:`` section plus flag overrides."""
    from tfopt.checks import config_from_dict

    section, _ = read_sections(path) if path else ({}, {})
    try:
        config = config_from_dict(SubmitConfig, section)
    except TypeError as exc:
        raise ConfigError(f"{path}: submit: {exc}") from None
    return config.with_overrides(**overrides)


@dataclasses.dataclass
class Prepared:
    """A submission checked locally: settings, parameters, compiled package."""

    config: SubmitConfig
    params: dict[str, Any]
    package_path: str
    display_name: str
    run_name: str


def _pipeline_display_name(package_path: str) -> str:
    import yaml

    with open(package_path) as fh:
        doc = next(yaml.safe_load_all(fh), None)  # a Kubeflow package has 2 documents
    return ((doc or {}).get("pipelineInfo") or {}).get("name") or "tfopt"


def prepare(
    config: SubmitConfig,
    params_path: str | None,
    set_params: Mapping[str, Any] | None,
    workdir: str,
) -> Prepared:
    """Validate settings and parameters and compile the package into ``workdir``."""
    from tfopt.client import user_files
    from tfopt.client.parameter_docs import check_cluster_params
    from tfopt.client.params import load_params

    config.check_target()
    params = load_params(params_path, config.pipeline, dict(set_params or {}))
    check_cluster_params(params, config.pipeline)  # with the compiled pipeline's defaults
    user_files.require_remote(params)  # the steps run in the cluster
    if config.template:
        from tfopt.client.templates import template_name

        package = config.template
        display = template_name(config.target, config.template)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
        return Prepared(config, params, package, display, config.run_name or f"{display}-{stamp}")
    if config.package:
        package = config.package
    else:
        from tfopt.pipelines.compile import compile_pipeline

        package = compile_pipeline(
            config.pipeline,
            os.path.join(workdir, f"{config.pipeline}.yaml"),
            **config.compile_options(),
        )
    display = _pipeline_display_name(package)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return Prepared(config, params, package, display, config.run_name or f"{display}-{stamp}")


@dataclasses.dataclass
class SubmitResult:
    """Where the run went: target, its id and a link for people."""

    target: str
    run_id: str
    name: str
    url: str = ""
    pipeline: str = ""  # the compiled pipeline's name (KFP: a directory of the pipeline root)
    config: SubmitConfig | None = dataclasses.field(default=None, repr=False)


def vertex_job(prep: Prepared, credentials=None):
    """An ``aiplatform.PipelineJob`` for the prepared submission (nothing sent yet)."""
    from google.cloud import aiplatform

    cfg = prep.config
    target = cfg.vertex_target()
    aiplatform.init(
        project=target.project,
        location=target.region,
        credentials=credentials,
        api_endpoint=target.api_endpoint or None,
    )
    job_id = re.sub(r"[^a-z0-9-]+", "-", prep.run_name.lower()).strip("-")[:128]
    return aiplatform.PipelineJob(
        display_name=prep.run_name,
        template_path=prep.package_path,
        job_id=job_id,
        pipeline_root=cfg.pipeline_root,
        parameter_values=prep.params,
        enable_caching=cfg.enable_caching,
        labels=dict(cfg.labels) or None,
        project=target.project,
        location=target.region,
        credentials=credentials,
    )


def kfp_pipeline_source(client, prep: Prepared) -> dict[str, Any]:
    """What ``kfp.Client`` starts a run or a recurring run from: the compiled package, or
    a published template's pipeline and version ids."""
    if not prep.config.template:
        return {"pipeline_package_path": prep.package_path}
    from tfopt.client.templates import kfp_template

    pipeline_id, version_id, _ = kfp_template(client, prep.config.template)
    return {"pipeline_id": pipeline_id, "version_id": version_id}


def submit_prepared(prep: Prepared, credentials=None) -> SubmitResult:
    """Create the run on the target. ``credentials`` (Vertex only): None = ADC."""
    cfg = prep.config
    if cfg.target == "kfp":
        client = kfp_client(cfg)
        experiment = _api_call(
            "KFP create experiment",
            client.create_experiment,
            name=cfg.experiment,
            namespace=cfg.namespace or None,
        )
        run = _api_call(
            "KFP create run",
            client.run_pipeline,
            experiment_id=experiment.experiment_id,
            job_name=prep.run_name,
            **kfp_pipeline_source(client, prep),
            params=prep.params,
            pipeline_root=cfg.pipeline_root or None,
            enable_caching=cfg.enable_caching,
            service_account=cfg.service_account or None,
        )
        url = f"{cfg.kfp_host()}/#/runs/details/{run.run_id}"
        log.info(
            "submitted KFP run %s (%s) in experiment %s", run.run_id, prep.run_name, cfg.experiment
        )
        return SubmitResult("kfp", run.run_id, prep.run_name, url, prep.display_name, cfg)
    target = cfg.vertex_target()
    check_reachable(target.host, "the Vertex AI API")
    job = vertex_job(prep, credentials)
    _api_call(
        "Vertex AI create pipeline job",
        job.submit,
        service_account=cfg.vertex_service_account() or None,
        network=cfg.network or None,
    )
    url = (
        f"https://console.cloud.google.com/vertex-ai/locations/{target.region}/pipelines/"
        f"runs/{job.name}?project={target.project}"
    )
    log.info("submitted Vertex AI pipeline job %s", job.resource_name)
    return SubmitResult("vertex", job.name, job.resource_name, url, prep.display_name, cfg)


def submit_file(
    params_path: str | None,
    set_params: Mapping[str, Any] | None = None,
    credentials=None,
    **overrides,
) -> SubmitResult:
    """Read settings and parameters from ``params_path`` and submit one run."""
    config = load_submit_config(params_path, **overrides)
    with tempfile.TemporaryDirectory(prefix="tfopt-submit-") as tmp:
        prep = prepare(config, params_path, set_params, tmp)
        return submit_prepared(prep, credentials)
