"""Low-rank factorization: truncated SVD of Dense and 1x1 Conv kernels, then fine-tuning.

A kernel ``W`` (``m x n``) becomes ``A @ B`` with ``A = U_r sqrt(S_r)`` (``m x r``)
and ``B = sqrt(S_r) V_r^T`` (``r x n``): the layer is replaced by a two-layer
``Sequential`` with the original name (first layer without bias, second with
the original bias and activation), both initialised from the factors, so the
factorized model starts as the best rank-``r`` approximation of the trained
one. ``r`` is given directly or chosen per layer as the smallest rank keeping
``energy`` of the squared singular values. Layers where rank ``r`` would not
save parameters (``r (m + n) >= m n``) are left as they are.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt import registry
from tfopt._keras import keras
from tfopt.compression.common import (
    Searchable,
    batch_size_setting,
    check_with_names,
    finetune,
    kernel_of,
    learning_rate_setting,
    load_for_compression,
    seed_setting,
)
from tfopt.errors import ConfigError, ModelError
from tfopt.settings import setting
from tfopt.training import models

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LowRankConfig(Searchable):
    """How to factorize: each field is a setting (``tfopt.settings``), described where declared."""

    rank: int = setting(
        0,
        "Rank of every factorized layer; 0 = chosen per layer by energy.",
        low=0,
        high=1 << 20,
        param="lowrank_rank",
    )
    energy: float = setting(
        0.9,
        "Share of the squared singular values kept when rank is 0.",
        low=0.0,
        high=1.0,
        low_open=True,
        param="lowrank_energy",
        search=(0.99, 0.6),
    )
    layers: tuple[str, ...] = setting(
        "",
        "Comma-separated names of layers to factorize; '' = every Dense / 1x1 Conv2D layer "
        "where the rank saves parameters.",
    )
    epochs: int = setting(
        5,
        "Fine-tuning epochs after factorizing (0: none).",
        low=0,
        high=100_000,
        param="lowrank_epochs",
    )
    batch_size: int = batch_size_setting()
    learning_rate: float = learning_rate_setting(5e-4)
    seed: int = seed_setting()

    def __post_init__(self):
        check_with_names(self, "layers")


@dataclass(frozen=True)
class LowRankResult:
    """Per-layer ``{rank, max_rank, params_before, params_after, energy}`` and totals."""

    model_path: str
    layers: dict[str, dict]
    params_before: int
    params_after: int
    factorized_params_before: int
    factorized_params_after: int
    # share of the model's parameters in the kernels that were factorized
    factorized_param_fraction: float
    metrics: dict
    notes: list[str] = field(default_factory=list)

    @property
    def factorized_reduction(self) -> float:
        return self.factorized_params_before / max(self.factorized_params_after, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "factorized_reduction": self.factorized_reduction}


def _matrix(layer) -> np.ndarray | None:
    """The kernel as an ``m x n`` matrix for Dense / 1x1 Conv2D, else ``None``."""
    if isinstance(layer, keras.layers.Dense) and len(layer.kernel.shape) == 2:
        return layer.kernel.numpy()
    if (
        isinstance(layer, keras.layers.Conv2D)
        and not isinstance(layer, keras.layers.Conv2DTranspose | keras.layers.DepthwiseConv2D)
        and (tuple(layer.kernel_size) == (1, 1) and layer.groups == 1)
    ):
        k = layer.kernel.numpy()
        return k.reshape(k.shape[2], k.shape[3])
    return None


def energy_rank(s: np.ndarray, energy: float) -> int:
    """Smallest rank whose singular values keep ``energy`` of the sum of squares."""
    cum = np.cumsum(s.astype(np.float64) ** 2)
    return min(len(s), int(np.searchsorted(cum / cum[-1], energy - 1e-12)) + 1)


def _svd_plan(w: np.ndarray, config: LowRankConfig) -> dict:
    """Rank, sizes, kept energy and the SVD factors of one ``m x n`` kernel."""
    m, k = w.shape
    u, s, vt = np.linalg.svd(w.astype(np.float64), full_matrices=False)
    r = min(config.rank, min(m, k)) if config.rank else energy_rank(s, config.energy)
    root = np.sqrt(s[:r])
    return {
        "rank": r,
        "max_rank": min(m, k),
        "params_before": m * k,
        "params_after": r * (m + k),
        "energy": float(np.sum(s[:r] ** 2) / max(np.sum(s**2), 1e-30)),
        "a": (u[:, :r] * root).astype(np.float32),
        "b": (root[:, None] * vt[:r]).astype(np.float32),
    }


def factorizability(model: keras.Model, config: LowRankConfig = LowRankConfig()) -> dict[str, dict]:
    """Per layer (input layers aside): ``{"factorizable", "reason", rank, params_before,
    params_after, energy}`` at ``config``'s rank / energy (sizes only for Dense / 1x1 Conv2D)."""
    out: dict[str, dict] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        w = _matrix(layer)
        if w is None:
            why = "only Dense and 1x1 Conv2D kernels are matrices"
            if kernel_of(layer) is None:
                why = "no kernel (passes through)"
            out[layer.name] = {"factorizable": False, "reason": why}
            continue
        entry = {k: v for k, v in _svd_plan(w, config).items() if k not in ("a", "b")}
        saves = entry["params_after"] < entry["params_before"]
        why = "" if saves else f"rank {entry['rank']} saves no parameters"
        out[layer.name] = {"factorizable": saves, "reason": why, **entry}
    return out


def factorizable(model: keras.Model, config: LowRankConfig) -> dict[str, tuple[bool, str]]:
    """:func:`factorizability` as ``{layer: (applies, why not)}`` (``Technique.plan``)."""
    return as_plan(factorizability(model, config))


def as_plan(factors: dict[str, dict]) -> dict[str, tuple[bool, str]]:
    """:func:`factorizability`'s answers as ``{layer: (applies, why not)}``."""
    return {n: (e["factorizable"], e["reason"]) for n, e in factors.items()}


def plan(model: keras.Model, config: LowRankConfig) -> dict[str, dict]:
    """Rank and SVD factors per layer; every bad input fails here, before training."""
    candidates = {la.name: la for la in model.layers if _matrix(la) is not None}
    names = {la.name for la in model.layers}
    for n in config.layers:
        if n not in names:
            raise ConfigError(
                f"LowRankConfig.layers names {n!r}, which the model does not "
                f"have; layers: {', '.join(sorted(names))}"
            )
        if n not in candidates:
            raise ModelError(
                f"layer {n!r} ({type(model.get_layer(n)).__name__}) cannot be "
                "factorized: only Dense and 1x1 Conv2D layers can"
            )
    if not candidates:
        raise ModelError("the model has no layer to factorize (no Dense or 1x1 Conv2D layer)")
    chosen = config.layers or tuple(candidates)
    out, too_large = {}, []
    for n in chosen:
        w = _matrix(candidates[n])
        assert w is not None  # candidates hold only factorizable layers
        m, k = w.shape
        max_rank = min(m, k)
        if config.rank > max_rank:
            too_large.append(f"{n} ({m}x{k}, max rank {max_rank})")
            continue
        entry = _svd_plan(w, config)
        r, before, after = entry["rank"], entry["params_before"], entry["params_after"]
        if after >= before:
            if config.layers:
                raise ConfigError(
                    f"rank {r} for layer {n!r} ({m}x{k}) saves no parameters: "
                    f"{after} >= {before}; use a rank below "
                    f"{before // (m + k) + (1 if before % (m + k) else 0)}"
                )
            continue
        out[n] = entry
    if too_large and (config.layers or not out):
        raise ConfigError(
            f"LowRankConfig.rank={config.rank} is larger than layer(s) allow: "
            + "; ".join(too_large)
        )
    if not out:
        raise ModelError(
            "the model has no layer to factorize: no Dense / 1x1 Conv2D layer "
            "where the rank saves parameters "
            f"(candidates: {', '.join(candidates)})"
        )
    return out


def _factorized_layer(layer, r: int):
    cfg = layer.get_config()
    if isinstance(layer, keras.layers.Dense):
        first = keras.layers.Dense(r, use_bias=False, name=f"{layer.name}_a")
        second = keras.layers.Dense(
            cfg["units"],
            activation=cfg["activation"],
            use_bias=cfg["use_bias"],
            name=f"{layer.name}_b",
        )
    else:
        first = keras.layers.Conv2D(
            r,
            1,
            strides=cfg["strides"],
            padding=cfg["padding"],
            data_format=cfg["data_format"],
            dilation_rate=cfg["dilation_rate"],
            use_bias=False,
            name=f"{layer.name}_a",
        )
        second = keras.layers.Conv2D(
            cfg["filters"],
            1,
            data_format=cfg["data_format"],
            activation=cfg["activation"],
            use_bias=cfg["use_bias"],
            name=f"{layer.name}_b",
        )
    return keras.Sequential([first, second], name=layer.name)


def factorize(model: keras.Model, layer_plan: dict[str, dict]) -> keras.Model:
    """A new model with the planned layers replaced by SVD-initialised factor pairs."""

    def clone(layer):
        if layer.name in layer_plan:
            return _factorized_layer(layer, layer_plan[layer.name]["rank"])
        return layer.__class__.from_config(layer.get_config())

    new = keras.models.clone_model(model, clone_function=clone)
    for layer in new.layers:
        old = model.get_layer(layer.name)
        if layer.name in layer_plan:
            p = layer_plan[layer.name]
            first, second = layer.layers
            first.set_weights([p["a"].reshape(first.kernel.shape)])
            second.set_weights([p["b"].reshape(second.kernel.shape), *old.get_weights()[1:]])
        elif old.get_weights():
            layer.set_weights(old.get_weights())
    return new


def factorize_model(
    model_path: str,
    dataset_dir: str,
    output_path: str,
    config: LowRankConfig = LowRankConfig(),
    tensorboard_dir: str | None = None,
) -> LowRankResult:
    """Factorize, fine-tune and save; the model at ``model_path`` is only read."""
    model, info = load_for_compression(model_path, dataset_dir, "lowrank")
    layer_plan = plan(model, config)
    new = factorize(model, layer_plan)
    notes = [
        f"{n}: rank {p['rank']} of {p['max_rank']}, energy {p['energy']:.3f}, "
        f"{p['params_before']} -> {p['params_after']} kernel params"
        for n, p in layer_plan.items()
    ]
    metrics = {}
    if config.epochs:
        metrics = finetune(
            new,
            info,
            config.epochs,
            config.batch_size,
            config.learning_rate,
            config.seed,
            tensorboard_dir=tensorboard_dir,
        )
    models.save_for_dataset(new, output_path, info)
    layers = {n: {k: v for k, v in p.items() if k not in ("a", "b")} for n, p in layer_plan.items()}
    result = LowRankResult(
        model_path=output_path,
        layers=layers,
        params_before=models.count_params(model),
        params_after=models.count_params(new),
        factorized_params_before=sum(p["params_before"] for p in layers.values()),
        factorized_params_after=sum(p["params_after"] for p in layers.values()),
        factorized_param_fraction=(
            sum(p["params_before"] for p in layers.values()) / max(models.count_params(model), 1)
        ),
        metrics=metrics,
        notes=notes,
    )
    log.info(
        "factorized %s: %d -> %d params", list(layers), result.params_before, result.params_after
    )
    return result


def apply(model_dir, dataset_dir, output_path, config, tensorboard_dir=None) -> registry.Outcome:
    """The technique's entry point (``tfopt.registry.Technique.apply``)."""
    r = factorize_model(model_dir, dataset_dir, output_path, config, tensorboard_dir)
    return registry.Outcome(
        metrics={
            **r.metrics,
            "params": r.params_after,
            "params_before": r.params_before,
            "factorized_reduction": r.factorized_reduction,
            "factorized_param_fraction": r.factorized_param_fraction,
        },
        model={
            "params": r.params_after,
            "sparsity": 0.0,
            "layers": r.layers,
            "factorized_param_fraction": r.factorized_param_fraction,
        },
        notes=r.notes,
    )


TECHNIQUE = registry.register(
    registry.Technique(
        name="lowrank",
        summary="Low-rank factorization: truncated SVD of Dense and 1x1 Conv kernels (rank by "
        "retained energy), fine-tuned; fewer parameters and multiply-adds.",
        config=LowRankConfig,
        apply=apply,
        variants=(
            registry.Variant("lowrank", "lowrank", switch="enable_lowrank"),
            registry.Variant("lowrank_int8", "tflite", base="lowrank", settings={"mode": "int8"}),
        ),
        trains=True,
        needs_keras=True,
        plan=factorizable,
    )
)
