"""Small helpers used inside component bodies (imported from the image)."""

from __future__ import annotations

import contextlib
import logging
import os

from tfopt.errors import ConfigError


def parse_shape(text: str) -> tuple[int, ...]:
    """``"28,28,1"`` -> ``(28, 28, 1)``; ``""`` -> ``()``."""
    text = text.strip().strip("()[]")
    if not text:
        return ()
    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ConfigError(
            f"shape {text!r} is not allowed: expected integers like '28,28,1'"
        ) from None


def log_metrics(metrics, values: dict) -> None:
    """Log the numeric entries of ``values`` on a KFP ``Metrics`` artifact.

    They also go to the artifact's file as JSON: KFP keeps metrics in metadata
    only, and kfp.local serves a cached task only while all its output files exist.
    """
    from tfopt import fsutil

    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        metrics.log_metric(key, float(value))
    fsutil.write_json(metrics.path, dict(metrics.metadata))


def write_inspect(artifact, model_path: str, convert: bool = True) -> None:
    """Write the pre-flight report (``tfopt.compression.inspect``) of the SavedModel at
    ``model_path`` to ``artifact`` (issue 15: the import and train steps give it).

    ``convert=False`` leaves out the TFLite part (``"tflite": null``), which costs seconds.
    """
    from tfopt import fsutil
    from tfopt.compression import inspect as inspect_lib

    fsutil.write_json(artifact.path, inspect_lib.inspect_model(model_path, convert=convert))


# The training settings the pipeline passes down as one ``train_config`` mapping
# (flat, as the pipeline's parameters are named; ModelConfig's then TrainConfig's).
MODEL_SETTINGS = ("arch", "width", "depth", "dropout", "alpha", "weights_uri")
TRAIN_SETTINGS = MODEL_SETTINGS + (
    "optimizer",
    "learning_rate",
    "scale_learning_rate",
    "epochs",
    "batch_size",
    "early_stopping_patience",
    "seed",
    "precision",
    "xla",
    "augment",
    "module_file",
)


def train_config(hyperparameters=None, mapping: dict | None = None, **settings):
    """The ``TrainConfig`` of a training component, tuned values applied.

    Args:
        hyperparameters: a tune step's ``best_hyperparameters`` artifact, or None.
        mapping: the component's ``train_config`` parameter: ``ModelConfig`` and
            ``TrainConfig`` field names, flat (``{"arch": "mlp", "epochs": 3}``);
            absent ones keep their defaults.
        settings: more fields, flat, overriding ``mapping`` (e.g. ``profile_batches``).

    Raises:
        ConfigError: a name that is no field (the allowed ones are listed) or a value
            ``TrainConfig`` / ``ModelConfig`` rejects.
    """
    import dataclasses

    from tfopt.training import models
    from tfopt.training import train as train_lib

    if mapping is not None and not isinstance(mapping, dict):
        raise ConfigError(f"train_config={mapping!r} is not allowed: expected a mapping")
    values = {**(mapping or {}), **settings}
    model_names = {f.name for f in dataclasses.fields(models.ModelConfig)}
    train_names = {f.name for f in dataclasses.fields(train_lib.TrainConfig)} - {"model"}
    unknown = sorted(set(values) - model_names - train_names)
    if unknown:
        raise ConfigError(
            f"train_config: unknown name(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(model_names | train_names))}"
        )
    model = models.ModelConfig(
        **_typed(models.ModelConfig, {k: v for k, v in values.items() if k in model_names})
    )
    train = _typed(train_lib.TrainConfig, {k: v for k, v in values.items() if k in train_names})
    return apply_tuned(train_lib.TrainConfig(model=model, **train), hyperparameters)


def _typed(cls, values: dict) -> dict:
    """``values`` with JSON's numbers typed as ``cls`` declares them: a dict parameter
    crosses KFP as a protobuf Struct, where every number is a float (``3`` -> ``3.0``)."""
    import typing

    hints = typing.get_type_hints(cls)
    out = dict(values)
    for name, value in values.items():
        if isinstance(value, bool):
            continue
        if hints.get(name) is int and isinstance(value, float) and value.is_integer():
            out[name] = int(value)
        elif hints.get(name) is float and isinstance(value, int):
            out[name] = float(value)
    return out


def apply_tuned(config, hyperparameters):
    """``config`` (a ``TrainConfig``) with a tune step's best hyperparameters applied;
    unchanged when the tune step was absent or disabled."""
    if hyperparameters is None or hyperparameters.metadata.get("skipped"):
        return config
    from tfopt.training import tune as tune_lib

    return tune_lib.train_config_from_hyperparameters(
        tune_lib.load_hyperparameters(hyperparameters.path), config
    )


def train_on_kubernetes(
    target: str, dataset, model, metrics, hyperparameters, mapping, request, **launch
) -> str:
    """The body of the ``trainjob`` and ``jobset`` train components: launch the job of
    ``target`` (``request``: replicas, GPUs, accelerator), wait, record metrics and metadata."""
    from dataclasses import asdict

    from tfopt.components import _image
    from tfopt.launch import jobset, trainjob

    launcher = {"trainjob": trainjob.train_on_trainjob, "jobset": jobset.train_on_jobset}[target]
    config = train_config(hyperparameters, mapping)
    result = launcher(dataset.uri, model.uri, asdict(config), request, _image.GPU_IMAGE, **launch)
    log_metrics(metrics, {**result.get("metrics", {}), "replicas": result.get("replicas", 0)})
    model.metadata.update(
        {
            "variant": "baseline",
            "format": "saved_model",
            "target": target,
            "params": result.get("params", 0),
        }
    )
    return model.uri


def ensure_exists(*artifacts) -> None:
    """Give each output that nothing was written to an empty directory (see ``mark_skipped``)."""
    for artifact in artifacts:
        if not os.path.exists(artifact.path):
            os.makedirs(artifact.path)


def not_contending(args: dict, technique) -> str:
    """Pop a compression step's contention inputs off ``args`` (``skip_non_contenders``,
    ``deploy_target``, and ``objective`` where it is not one of the technique's settings);
    why its variant is not to be made ("" when it is: ``registry.not_contending``)."""
    from tfopt import registry

    skip, target = args.pop("skip_non_contenders", False), args.pop("deploy_target", "")
    own = any(s.name == "objective" for s in technique.settings)
    objective = args.get("objective", "") if own else args.pop("objective", "")
    return registry.not_contending(args["variant"], target, objective) if skip else ""


def skip_if_disabled(output, variant: str, enabled: bool, *inputs, also=()) -> bool:
    """Mark ``output`` skipped (and return True) when disabled or an input was skipped.

    Disabled variants still run as a cheap no-op step, so the evaluation step
    can take every variant as an optional input without ``dsl.If`` plumbing.
    ``also``: the step's other outputs (metrics, logs), left as empty directories.
    """
    skipped_input = next((i for i in inputs if i is not None and i.metadata.get("skipped")), None)
    if enabled and skipped_input is None:
        return False
    reason = (
        "disabled by pipeline parameter"
        if not enabled
        else (f"input {skipped_input.metadata.get('variant', '?')} was skipped")
    )
    mark_skipped(output, also, variant=variant, skip_reason=reason)
    return True


def mark_skipped(output, also=(), **metadata) -> None:
    """Mark ``output`` skipped and write a small file saying why.

    The files matter: kfp.local serves a cached task only while every output
    artifact it recorded exists, so an output with no file made each cached
    re-run execute the step and everything downstream of it again.
    """
    from tfopt import fsutil

    output.metadata.update({"skipped": True, **metadata})
    fsutil.write_json(output.path, {"skipped": True, **metadata})
    ensure_exists(*also)


@contextlib.contextmanager
def skip_when_not_applicable(output, variant: str, fmt: str, also=()):
    """Turn a ``ModelError`` (the technique does not fit this model: no layer to prune or
    factorize, an op int8 cannot convert ...) into a skipped variant with the reason.

    A user's own model should not fail the whole run because one variant cannot be
    made from it; configuration errors (``ConfigError``) still fail the step.
    """
    from tfopt.errors import ModelError

    try:
        yield
    except ModelError as exc:
        logging.getLogger(__name__).warning("variant %s skipped: %s", variant, exc)
        mark_skipped(
            output, also, variant=variant, format=fmt, not_applicable=True, skip_reason=str(exc)
        )


def describe_model(artifact, variant: str, fmt: str, base=None, **extra) -> None:
    """The metadata every candidate model carries (read by the evaluation step)."""
    meta = {"variant": variant, "format": fmt, "skipped": False}
    if base is not None:
        meta["base"] = base.metadata.get("variant", "")
        for key in ("params", "sparsity"):
            if key in base.metadata and key not in extra:
                meta[key] = base.metadata[key]
    meta.update({k: v for k, v in extra.items() if v is not None})
    artifact.metadata.update(meta)


def candidate_models(inputs: dict) -> dict:
    """Model artifacts among a component's inputs by variant name (skipped ones out).

    Imports nothing heavy: the select step uses it without loading TensorFlow.
    """
    out = {}
    for name, value in inputs.items():
        meta = getattr(value, "metadata", None)
        if not hasattr(value, "path") or not isinstance(meta, dict):
            continue
        if meta.get("skipped") or "format" not in meta:  # datasets, outputs, skipped
            continue
        out[meta.get("variant", name)] = value
    return out


def candidates_from_inputs(inputs: dict) -> list:
    """Model artifacts among a component's inputs -> evaluation candidates (skipped ones out)."""
    from tfopt.evaluation.evaluate import Candidate

    return [
        Candidate(name=name, path=a.path, format=a.metadata["format"], metadata=dict(a.metadata))
        for name, a in candidate_models(inputs).items()
    ]


def not_applicable_records(inputs: dict) -> list[dict]:
    """Evaluation records for variants whose technique did not fit the model (rejected,
    with the reason) and for those not made because they could not be picked
    (``not_made``: ``skip_non_contenders``), so the summary lists them; disabled variants
    stay out."""
    out = []
    for value in inputs.values():
        meta = getattr(value, "metadata", None)
        if not isinstance(meta, dict):
            continue
        record = {"name": meta.get("variant"), "format": meta.get("format", ""), "path": ""}
        if meta.get("not_applicable"):
            error = f"not applicable to this model: {meta['skip_reason']}"
            out.append({**record, "error": error, "not_applicable": True})
        elif meta.get("not_contender"):
            out.append({**record, "error": meta["skip_reason"], "not_made": True})
    return out
