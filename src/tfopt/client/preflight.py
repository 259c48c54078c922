"""Check every pipeline parameter before any step runs, with the steps' own config classes.

:func:`check_pipeline_params` builds, from the pipeline parameters (defaults
filled in), the same frozen config dataclasses that each component of the
``optimize`` pipeline builds (``IngestConfig``, ``TrainConfig``, ``PruneConfig``
...), so ranges and choices are checked where the rules live, in seconds,
before anything is launched. Parameters of disabled techniques are checked too:
a value that could never work is a mistake even when it is not used yet.
Combinations the configs cannot see alone are checked here: an architecture
that cannot take the data's shape, a ``gs://`` source that cannot be reached.

``tfopt run``, ``tfopt submit`` and ``tfopt schedule`` call it through
:func:`tfopt.client.params.load_params`, so a deterministic error never reaches
a step (where KFP would retry it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

from tfopt.client.pipeline_spec import pipeline_defaults, pipeline_inputs
from tfopt.errors import ConfigError, TfoptError

# Shapes of the built-in sources, known without reading anything.
_BUILTIN_SHAPES = {"builtin:digits": (8, 8, 1), "builtin:fashion_mnist": (28, 28, 1)}


def check_pipeline_params(
    params: dict[str, Any], pipeline: str = "optimize", local: bool = False
) -> None:
    """Raise ``ConfigError`` naming the step and the parameter on the first bad value.

    Args:
        params: parameters already checked for names and types
            (:func:`tfopt.client.params.validate_params`); missing ones take
            the pipeline's defaults.
        pipeline: pipeline name; only ``optimize`` has steps to check.
        local: the steps run on this machine (``tfopt run``), so the source is
            checked here too (it exists, a ``gs://`` bucket is reachable, its
            shape suits ``arch``). Submitted runs read it in the cluster.
    """
    if pipeline != "optimize":
        return
    p = {**pipeline_defaults(pipeline), **params}
    for step, build in _STEPS + _techniques(p):
        try:
            build(p)
        except TfoptError as exc:
            raise ConfigError(f"step {step}: {exc}") from None
    if local:
        _check_source(p)


def _ingest(p):
    import dataclasses

    from tfopt.components import _util
    from tfopt.data import ingest as ingest_lib

    # every pipeline parameter named like an IngestConfig field goes to it (shapes parsed)
    fields = {f.name for f in dataclasses.fields(ingest_lib.IngestConfig)}
    values = {k: v for k, v in p.items() if k in fields}
    for key in ("feature_shape", "image_size"):
        if isinstance(values.get(key), str):
            values[key] = _util.parse_shape(values[key])
    ingest_lib.IngestConfig(**values)


def _tune(p):
    from tfopt.training import train as train_lib
    from tfopt.training import tune as tune_lib

    tune_lib.TuneConfig(
        algorithm=p["tune_algorithm"],
        max_trials=p["tune_trials"],
        # a dict: TuneConfig parses it (and reports its errors) in __post_init__
        search_space=p["tune_search_space"] or tune_lib.DEFAULT_SEARCH_SPACE,  # type: ignore[arg-type]
        base=train_lib.TrainConfig(epochs=p["tune_epochs"], seed=p["seed"]),
    )


def _train(p):
    from tfopt.components import _util
    from tfopt.launch import validate

    # the train_config mapping the pipeline hands every train component
    _util.train_config(None, {k: p[k] for k in _util.TRAIN_SETTINGS if k in p})
    validate.TrainingRequest(
        p["training_target"], p["replicas"], p["gpus_per_replica"], p["accelerator_type"]
    )


def _import(p):
    from tfopt.training import imported

    imported.ImportConfig(
        input_range=p["input_range"],
        output=p["model_output"],
        fine_tune_epochs=p["fine_tune_epochs"],
    )
    if p["fine_tune_epochs"] and not p["model_uri"]:
        raise ConfigError(
            f"fine_tune_epochs={p['fine_tune_epochs']} is not allowed without model_uri "
            "(it fine-tunes an imported model; use epochs to train one)"
        )


def _techniques(p) -> list[tuple[str, Callable[[dict], None]]]:
    """One check per variant: its technique's config from the pipeline parameters and
    the settings the variant fixes (the same values its step will get)."""
    import functools

    from tfopt import registry
    from tfopt.compression import techniques  # noqa: F401 - registers every technique

    return [(v.task, functools.partial(_variant_config, v)) for v in registry.variants()]


def _variant_config(variant, p) -> None:
    from tfopt import registry

    t = registry.get_technique(variant.technique)
    values = {s.name: p[s.param] for s in t.settings if s.param}
    t.make_config({**values, **variant.settings})


def _evaluate(p):
    from tfopt.evaluation import evaluate as evaluate_lib

    evaluate_lib.EvalConfig(latency_iterations=p["latency_iterations"])


def _select(p):
    from tfopt.evaluation import select as select_lib

    extra = {k: p[k] for k in ("min_accuracy", "min_f1") if k in p}
    select_lib.SelectionPolicy(
        max_accuracy_drop=p["max_accuracy_drop"],
        max_size_bytes=p["max_size_bytes"],
        max_latency_ms_p99=p["max_latency_ms_p99"],
        objective=p["objective"],
        previous=p["previous_summary"],
        min_accuracy_change=p["min_accuracy_change"],
        change_mode=p["change_mode"],
        deploy_target=p["deploy_target"],
        **extra,
    )
    if p["previous_summary"]:
        select_lib.load_previous(p["previous_summary"])


def _validate_data(p):
    from tfopt.data import drift

    drift.DriftConfig(
        drift_linf_threshold=p["drift_linf_threshold"],
        drift_js_threshold=p["drift_js_threshold"],
        accept_drift=p["accept_drift"],
    )
    if not isinstance(p["champion_uri"], str):
        raise ConfigError(f"champion_uri={p['champion_uri']!r} is not allowed: expected text")


def _deploy(p):
    from tfopt.checks import check_choice
    from tfopt.deploy import vertex
    from tfopt.deploy.serving import deploy, infravalidate, k8s

    deploy.DeployConfig(model_name=p["model_name"])
    infravalidate.InfraValidationConfig(model_name=p["model_name"])
    check_choice("deploy", "serving_variant", p["serving_variant"], tuple(k8s.IMAGES))
    vertex.DeployConfig(
        model_display_name=p["model_name"],
        machine_type=p["vertex_machine_type"],
        canary_percent=p["canary_percent"],
    )
    if p["deploy_target"] == "kserve":
        # the repository and the storage URI the cluster reads: a local path is refused here,
        # before the run is submitted (as local files are)
        from tfopt.deploy import model_registry
        from tfopt.deploy.kserve.config import KServeConfig

        KServeConfig(
            model_name=p["model_name"],
            serving_base_path=p["serving_base_path"],
            storage_uri=p["kserve_storage_uri"],
            namespace=p["kserve_namespace"],
            variant=p["serving_variant"],
            accelerator_type=p["accelerator_type"],
            canary_percent=p["canary_percent"],
        )
        if p["model_registry_host"]:
            model_registry.RegistryConfig(p["model_registry_host"])
    if p["deploy_target"] == "vertex" and not (p["project"] and p["region"]):
        raise ConfigError(
            "deploy_target='vertex' needs project and region "
            f"(got project={p['project']!r}, region={p['region']!r})"
        )


_STEPS: list[tuple[str, Callable[[dict], None]]] = [
    ("ingest", _ingest),
    ("validate-data", _validate_data),
    ("tune", _tune),
    ("train", _train),
    ("import-model", _import),
    ("evaluate", _evaluate),
    ("select", _select),
    ("deploy", _deploy),
]


def known_feature_shape(p: dict[str, Any]) -> tuple[int, ...] | None:
    """The shape of one example as ingest will see it, when it is known without training.

    ``feature_shape`` when given; the built-in datasets' shapes; a local CSV's
    flat row (its header's column count minus the label). None otherwise.
    """
    from tfopt.components import _util

    if p.get("feature_shape"):
        return _util.parse_shape(p["feature_shape"])
    source = p["source"]
    if source in _BUILTIN_SHAPES:
        return _BUILTIN_SHAPES[source]
    if source.lower().endswith(".csv") and os.path.isfile(source):
        header = _csv_header(source)
        return (len(header) - 1,) if p["label_column"] in header else None
    return None


def _csv_header(path: str) -> list[str]:
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return next(csv.reader(fh), [])
    except UnicodeDecodeError:
        from tfopt.errors import DataError

        raise DataError(f"{path}: not a text CSV file (it is not UTF-8)") from None


def _check_source(p: dict[str, Any]) -> None:
    source = p["source"]
    if source.startswith("gs://"):
        from tfopt.checks import check_reachable

        check_reachable("https://storage.googleapis.com", f"Cloud Storage for source {source}")
    elif (
        "://" not in source
        and not source.startswith("builtin:")
        and not set(",*?") & set(source)
        and not os.path.exists(source)
    ):
        raise ConfigError(f"source={source!r}: no such file or directory")
    shape = known_feature_shape(p)
    weights = p.get("weights_uri", "")
    if weights and "://" not in weights:
        found = os.path.exists(weights) or os.path.exists(weights + ".index")
        if not found:
            raise ConfigError(f"weights_uri={weights!r}: no such file (nor checkpoint .index)")
    _check_user_model(p)
    _check_champion(p)
    own_model = p.get("model_uri") or p.get("module_file")  # arch is not used then
    if shape is not None and not own_model and p["arch"] != "mlp" and len(shape) != 3:
        raise ConfigError(
            f"arch={p['arch']!r} needs image inputs (height, width, channels) but {source} gives "
            f"examples of shape {shape}; use arch=mlp, or feature_shape=H,W,C to reshape them"
        )


def _check_champion(p: dict[str, Any]) -> None:
    """A local ``champion_uri`` is a SavedModel directory (a named champion that is not there
    is a mistake; a repository's version deleted since is reported by validate-data)."""
    uri = p.get("champion_uri", "")
    named = uri and uri.strip().lower() != "none" and "://" not in uri
    if named and not os.path.isfile(os.path.join(uri, "saved_model.pb")):
        raise ConfigError(
            f"champion_uri={uri!r}: not a SavedModel directory (no saved_model.pb); "
            "expected the deployed model to compare with, '' (the deploy target's) or 'none'"
        )


def _check_user_model(p: dict[str, Any]) -> None:
    """A local ``model_uri`` / ``module_file`` exists (and the module file compiles)."""
    uri, module = p.get("model_uri", ""), p.get("module_file", "")
    if uri and "://" not in uri and not os.path.exists(uri):
        raise ConfigError(
            f"model_uri={uri!r}: no such file or directory; expected a SavedModel directory, "
            "a .keras or a .h5 file"
        )
    if module and "://" not in module:
        from tfopt.training import module_file

        module_file.check_syntax(module)


# Where a probe's error says less than a person needs.
_ALLOWED_TEXT = {"previous_summary": "'' (no comparison) or a previous run's summary.json"}
# Probe values that break any range: what each config says it expected is the rule.
_PROBES = {"Integer": -(10**12), "Float": -1e300, "String": "\x00?"}


def describe_params(pipeline: str = "optimize") -> list[dict[str, Any]]:
    """Every pipeline parameter with its type, default and allowed values.

    The allowed values are read off the configs themselves: each parameter is
    set to a value outside any range and the config's error says what it
    expected, so this listing cannot drift from the checks. Each is probed
    with the other parameters at their defaults (``replicas`` > 1 needs a
    ``training_target`` other than ``local``, for example).
    """

    out = []
    for name, spec in pipeline_inputs(pipeline).items():
        allowed = "true or false" if spec.type == "Boolean" else "any"
        probe = _PROBES.get(spec.type)
        if probe is not None:
            try:
                check_pipeline_params({name: probe}, pipeline)
            except TfoptError as exc:
                text = str(exc)
                allowed = text.split("expected ", 1)[1] if "expected " in text else text
                allowed = re.sub(r"in \[(\S+), None\]", r">= \1", allowed)
        allowed = _ALLOWED_TEXT.get(name, allowed)
        out.append({"name": name, "type": spec.type, "default": spec.default, "allowed": allowed})
    return out
