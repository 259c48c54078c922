"""Structured (channel) pruning: whole filters and units removed, so the dense model is smaller
and faster on every runtime, not only smaller when zipped (issue 31).

``channel_prune_model`` traces the flattened model into coupling groups
(``compression/channels.py``: a conv and its BatchNormalization, DepthwiseConv2D channels,
the next layer's inputs, every member of a residual ``Add`` together, Dense rows after
Flatten or global pooling), ranks each group's channels by importance (the L1 norm of
their filters, each producer's normalised to its mean; or the BatchNormalization gammas
that scale them), picks one keep ratio for every prunable group so that the model loses
``flops_fraction`` of its multiply-adds (bisection: FLOPs fall with the ratio), rebuilds a
genuinely smaller model with the kept slices of every weight, fine-tunes it (the learning
rate decaying to zero; with ``teacher_weight``, against the unpruned model's outputs as
well as the labels) and saves a plain SavedModel: no masks, no wrappers.

Why not a library: Sony's model-compression-toolkit's Keras pruning does not resolve with
this stack (it pins matplotlib < 3.10), and tfmot / NNCF have no filter pruning for
TensorFlow today; the graph walk is ~200 lines over tf_keras' own layer classes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

import numpy as np

from tfopt import registry
from tfopt._keras import keras
from tfopt.compression import channel_latency, channels
from tfopt.compression.common import (
    Searchable,
    Teacher,
    batch_size_setting,
    finetune,
    learning_rate_setting,
    load_for_compression,
    seed_setting,
)
from tfopt.errors import ModelError
from tfopt.settings import check_settings, setting
from tfopt.training import models

log = logging.getLogger(__name__)

IMPORTANCE = ("l1", "bn_gamma")


@dataclass(frozen=True)
class ChannelPruneConfig(Searchable):
    """How to prune channels: each field is a setting (``tfopt.settings``)."""

    flops_fraction: float = setting(
        0.5,
        "Fraction of the model's multiply-adds (FLOPs) removed by taking whole channels out.",
        low=0.0, high=0.95, low_open=True, param="channel_sparsity", search=(0.2, 0.8),
    )  # fmt: skip
    latency_target: float = setting(
        0.0,
        "Batch-1 p50 of the pruned SavedModel through the serving runtime, as a fraction "
        "of the unpruned model's: the keep ratio is bisected on measured latency to reach "
        "it, instead of on flops_fraction (0: flops_fraction decides).",
        low=0.0, high=1.0, high_open=True, param="channel_latency_target",
    )  # fmt: skip
    importance: str = setting(
        "l1",
        "How channels are ranked: l1 (the L1 norm of their filters) or bn_gamma (the "
        "BatchNormalization scale after them, L1 where there is none).",
        choices=IMPORTANCE,
    )
    round_to: int = setting(
        8,
        "Kept channels per group are a multiple of this (vector-friendly widths); a group "
        "with no more channels is left whole.",
        low=1, high=128,
    )  # fmt: skip
    epochs: int = setting(
        6, "Fine-tuning epochs of the smaller model (0: none).", low=0, high=100_000,
        param="channel_prune_epochs",
    )  # fmt: skip
    # 0 by default, measured: on MobileNetV2 0.35 and ResNet-20 (Fashion-MNIST, 50% and 70%
    # of the FLOPs out, docs/benchmarks.md) a weight of 0.5 ended 1.6-2.2 points below the
    # labels alone; a teacher helps when it is better trained than the student can become.
    teacher_weight: float = setting(
        0.0,
        "Weight of the unpruned model's outputs (temperature 4) in the fine-tuning loss, the "
        "labels weighing the rest: the pruned model learns as a student initialised from "
        "its teacher (0: the labels only).",
        low=0.0, high=1.0,
    )  # fmt: skip
    batch_size: int = batch_size_setting()
    learning_rate: float = learning_rate_setting(1e-3)
    seed: int = seed_setting()

    def __post_init__(self):
        check_settings(self)

    @property
    def fixed(self) -> str:
        return (
            f"latency_target={self.latency_target:g} decides the channels, not flops_fraction"
            if self.latency_target
            else ""
        )


@dataclass(frozen=True)
class ChannelPruneResult:
    """What structured pruning reached.

    Attributes:
        flops_before / flops_after: multiply-adds of one example, before and after.
        params_before / params_after: weights of the model, before and after.
        groups: per coupling group (named by its first producer): channels before and
            after, and the producer layers sharing them.
        frozen: layers left whole, with the reason.
    """

    model_path: str
    flops_before: int
    flops_after: int
    params_before: int
    params_after: int
    keep_ratio: float
    groups: dict[str, dict]
    frozen: dict[str, str]
    metrics: dict
    notes: list[str] = field(default_factory=list)
    latency_ratio: float | None = None  # measured, with a latency target

    @property
    def flops_removed(self) -> float:
        return 1.0 - self.flops_after / max(self.flops_before, 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "flops_removed": self.flops_removed}


def layer_flops(layer, channels_in: int, channels_out: int) -> int:
    """Multiply-adds of ``layer`` for one example, with the given input / output channels."""
    shape = layer.output.shape
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return int(shape[1] * shape[2] * kh * kw * channels_in * layer.depth_multiplier)
    if isinstance(layer, keras.layers.SeparableConv2D):
        kh, kw = layer.kernel_size
        spatial = int(shape[1] * shape[2])
        depthwise = spatial * kh * kw * channels_in * layer.depth_multiplier
        return int(depthwise + spatial * channels_in * layer.depth_multiplier * channels_out)
    if isinstance(layer, keras.layers.Conv2D):
        kh, kw = layer.kernel_size
        return int(shape[1] * shape[2] * kh * kw * channels_in * channels_out // layer.groups)
    if isinstance(layer, keras.layers.Dense):
        return int(np.prod([int(d) for d in shape[1:-1]])) * channels_in * channels_out
    return 0


def model_flops(model, groups: channels.Groups, keep: dict[int, np.ndarray]) -> int:
    total = 0
    for layer in model.layers:
        if layer.name in groups.spaces_in:
            c_in = len(channels.kept_indices(groups.spaces_in[layer.name], keep))
            c_out = len(channels.kept_indices(groups.spaces_out[layer.name], keep))
            total += layer_flops(layer, c_in, c_out)
    return total


def importance(model, groups: channels.Groups, gid: int, how: str) -> np.ndarray:
    """Per channel of group ``gid``: the sum over its producers of their filters' L1 norms
    (each producer's divided by its mean, so wide and narrow layers weigh alike), or the
    BatchNormalization gammas that follow them."""
    score = np.zeros(groups.roots[gid].size)
    for name in groups.producers[gid]:
        layer = model.get_layer(name)
        kernel = layer.get_weights()[1 if isinstance(layer, keras.layers.SeparableConv2D) else 0]
        l1 = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0)
        gamma = _gamma_after(model, name) if how == "bn_gamma" else None
        values = np.abs(gamma) if gamma is not None else l1
        score += values / max(float(values.mean()), 1e-12)
    return score


def _gamma_after(model, name: str) -> np.ndarray | None:
    for node in model.get_layer(name)._outbound_nodes:
        nxt = node.outbound_layer
        if isinstance(nxt, keras.layers.BatchNormalization) and nxt.scale:
            return nxt.gamma.numpy()
    return None


def ranked(model, groups: channels.Groups, config: ChannelPruneConfig):
    """``keep_at(ratio)``: per prunable group, that share of its channels, the most important
    first (a multiple of ``round_to``, at least ``round_to``), as sorted indices."""
    prunable = [g for g in groups.prunable() if groups.roots[g].size > config.round_to]
    if not prunable:
        raise ModelError(
            "channel_prune: no layer to prune (every channel group is frozen or has at most "
            f"round_to={config.round_to} channels): "
            + "; ".join(sorted(set(_frozen(groups).values())))[:500]
        )
    order = {g: np.argsort(-importance(model, groups, g, config.importance)) for g in prunable}

    def keep_at(ratio: float) -> dict[int, np.ndarray]:
        out = {}
        for g in prunable:
            size = groups.roots[g].size
            n = max(config.round_to, round(ratio * size / config.round_to) * config.round_to)
            out[g] = np.sort(order[g][: min(n, size)])
        return out

    return keep_at


def choose_channels(model, groups: channels.Groups, config: ChannelPruneConfig):
    """(keep ratio, group -> kept channel indices) that removes ``config.flops_fraction``
    of the FLOPs, or the most that can be removed."""
    keep_at = ranked(model, groups, config)
    full = model_flops(model, groups, {})
    low, high = 0.0, 1.0  # ratio: low removes too much (or is the floor), high too little
    for _ in range(30):
        mid = (low + high) / 2
        if 1 - model_flops(model, groups, keep_at(mid)) / full > config.flops_fraction:
            low = mid
        else:
            high = mid
    # the largest ratio that still reaches the target; the floor if none does
    reached = 1 - model_flops(model, groups, keep_at(low)) / full >= config.flops_fraction
    ratio = low if reached else high
    return ratio, keep_at(ratio)


def _frozen(groups: channels.Groups) -> dict[str, str]:
    return {
        producer: groups.roots[g].frozen
        for g, names in groups.producers.items()
        for producer in names
        if groups.roots[g].frozen
    }


def plan_layers(model, config: ChannelPruneConfig) -> dict[str, tuple[bool, str]]:
    """Per layer: whether structured pruning takes channels out of it, and why not
    (``registry.Technique.plan``; ``tfopt inspect``)."""
    groups = channels.trace(model)
    out = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        gid = groups.group_of(layer.name)
        if gid is None or layer.name not in groups.producers.get(gid, []):
            out[layer.name] = (False, "no filters or units of its own")
        elif groups.roots[gid].frozen:
            out[layer.name] = (False, groups.roots[gid].frozen)
        elif groups.roots[gid].size <= config.round_to:
            out[layer.name] = (False, f"{groups.roots[gid].size} channels (<= round_to)")
        else:
            out[layer.name] = (True, "")
    return out


def channel_prune_model(
    model_path: str,
    dataset_dir: str,
    output_path: str,
    config: ChannelPruneConfig = ChannelPruneConfig(),
    tensorboard_dir: str | None = None,
) -> ChannelPruneResult:
    """Take channels out, fine-tune, save; the model at ``model_path`` is only read."""
    model, info = load_for_compression(model_path, dataset_dir, "channel_prune")
    groups = channels.trace(model)
    notes, latency = [], None
    if config.latency_target:
        keep_at = ranked(model, groups, config)
        choice = channel_latency.choose(
            model_path, model, groups, keep_at, info, config.latency_target
        )
        ratio, keep, latency = choice.ratio, keep_at(choice.ratio), choice.measured
        notes.append(choice.describe(config.latency_target))
    else:
        ratio, keep = choose_channels(model, groups, config)
    smaller = channels.rebuild(model, groups, keep)
    flops_before, flops_after = model_flops(model, groups, {}), model_flops(model, groups, keep)
    log.info("channel pruning: keep ratio %.3f, FLOPs %d -> %d", ratio, flops_before, flops_after)
    metrics = (
        finetune(
            smaller,
            info,
            config.epochs,
            config.batch_size,
            config.learning_rate,
            config.seed,
            tensorboard_dir=tensorboard_dir,
            teacher=Teacher(model, config.teacher_weight) if config.teacher_weight else None,
            cosine=True,
        )
        if config.epochs
        else {}
    )
    models.save_for_dataset(smaller, output_path, info)
    if not latency and 1 - flops_after / flops_before < config.flops_fraction - 0.01:
        notes.append(
            f"removed {1 - flops_after / flops_before:.0%} of the FLOPs, not "
            f"{config.flops_fraction:.0%}: every prunable group is at round_to channels"
        )
    return ChannelPruneResult(
        model_path=output_path,
        flops_before=flops_before,
        flops_after=flops_after,
        params_before=models.count_params(model),
        params_after=models.count_params(smaller),
        keep_ratio=ratio,
        groups={
            groups.producers[g][0]: {
                "channels": groups.roots[g].size,
                "kept": len(k),
                "layers": groups.producers[g],
            }
            for g, k in keep.items()
        },
        frozen=_frozen(groups),
        metrics=metrics,
        notes=notes,
        latency_ratio=latency,
    )


def apply(model_dir, dataset_dir, output_path, config, tensorboard_dir=None) -> registry.Outcome:
    """The technique's entry point (``tfopt.registry.Technique.apply``)."""
    r = channel_prune_model(model_dir, dataset_dir, output_path, config, tensorboard_dir)
    return registry.Outcome(
        metrics={
            **r.metrics,
            "flops_before": r.flops_before,
            "flops_after": r.flops_after,
            "flops_removed": r.flops_removed,
            "params": r.params_after,
            "params_before": r.params_before,
            "keep_ratio": r.keep_ratio,
            **({"latency_ratio": r.latency_ratio} if r.latency_ratio else {}),
        },
        model={
            "params": r.params_after,
            "sparsity": 0.0,
            "flops": r.flops_after,
            "flops_removed": r.flops_removed,
            "channel_groups": r.groups,
        },
        notes=r.notes,
    )


TECHNIQUE = registry.register(
    registry.Technique(
        name="channel_prune",
        summary="Structured pruning: whole channels (filters, units) out of every coupled "
        "layer, fine-tuned; a smaller dense model, faster on every runtime.",
        config=ChannelPruneConfig,
        apply=apply,
        variants=(
            registry.Variant(
                "channel_pruned",
                "channel_prune",
                switch="enable_channel_pruning",
                task="channel-prune",
                default=False,
            ),
            registry.Variant(
                "channel_pruned_int8", "tflite", base="channel_pruned", settings={"mode": "int8"}
            ),
        ),
        trains=True,
        needs_keras=True,
        plan=plan_layers,
    )
)
