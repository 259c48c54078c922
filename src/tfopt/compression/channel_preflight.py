"""Structured pruning's part of the pre-flight report (issue 31): per layer its FLOPs, output
channels, coupling group and the channels kept at the target; for the model the FLOPs
before and after ``flops_fraction``, the keep ratio and the parameters after.

The numbers come from the technique's own functions (``channel_prune.choose_channels``,
``layer_flops``, ``model_flops``, ``channels.rebuild``) on the flattened model: the
channels are chosen and the smaller model is built, nothing is trained.
"""

from __future__ import annotations

from tfopt._keras import keras
from tfopt.compression import channel_prune, channels
from tfopt.errors import ModelError
from tfopt.training import models

SHOWN_GROUPS = 12  # in the text summary


def channel_report(flat: keras.Model, config) -> tuple[dict[str, dict], dict]:
    """(layer name -> its FLOPs and channels, the model-level ``channel_prune`` section).

    Where nothing can be pruned the section's ``reason`` says why (``choose_channels``'
    refusal) and the figures after the target are ``None``.
    """
    groups = channels.trace(flat)
    names = {g: groups.producers[g][0] for g in groups.order}  # as ChannelPruneResult.groups
    try:
        ratio, keep = channel_prune.choose_channels(flat, groups, config)
        reason = None
    except ModelError as exc:
        ratio, keep, reason = None, None, str(exc)
    flops_before = channel_prune.model_flops(flat, groups, {})
    flops_after = None if keep is None else channel_prune.model_flops(flat, groups, keep)
    rows = {
        layer.name: _layer_entry(layer, groups, names, keep)
        for layer in flat.layers
        if not isinstance(layer, keras.layers.InputLayer)
    }
    params = models.count_params(flat)
    section = {
        "flops_fraction": config.flops_fraction,
        "round_to": config.round_to,
        "importance": config.importance,
        "flops_before": flops_before,
        "flops_after": flops_after,
        "flops_removed": None if flops_after is None else 1 - flops_after / max(flops_before, 1),
        "keep_ratio": ratio,
        "params_before": params,
        "params_after": None
        if keep is None
        else models.count_params(channels.rebuild(flat, groups, keep)),
        "groups": {
            names[g]: {
                "channels": groups.roots[g].size,
                "kept": None if keep is None else len(channels.kept_indices(groups.roots[g], keep)),
                "layers": groups.producers[g],
                "frozen": groups.roots[g].frozen,
            }
            for g in groups.order
        },
        "reason": reason,
    }
    return rows, section


def _layer_entry(layer, groups: channels.Groups, names: dict, keep) -> dict:
    """A layer's FLOPs (multiply-adds per example) and output channels, before and after."""
    space_out = groups.spaces_out.get(layer.name)
    gid = groups.group_of(layer.name)

    def flops(kept: dict) -> int:
        if layer.name not in groups.spaces_in or space_out is None:
            return 0
        c_in = len(channels.kept_indices(groups.spaces_in[layer.name], kept))
        return channel_prune.layer_flops(layer, c_in, len(channels.kept_indices(space_out, kept)))

    return {
        "flops": flops({}),
        "flops_after": None if keep is None else flops(keep),
        "channels": None if space_out is None else space_out.size,
        "channels_kept": None
        if keep is None or space_out is None
        else len(channels.kept_indices(space_out, keep)),
        "channel_group": names.get(gid) if gid is not None else None,
    }


def si(n: float) -> str:
    """``1234567`` -> ``1.23M``."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(int(n))


def format_section(section: dict | None) -> list[str]:
    """The report's ``channel_prune`` section as summary lines."""
    if not section:
        return []
    head = f"channel_prune at flops_fraction {section['flops_fraction']:g}"
    if section["reason"]:
        return [f"{head}: FLOPs {si(section['flops_before'])}; {section['reason']}"]
    groups = [
        f"{name} {g['channels']}->{g['kept']}"
        + (f" ({', '.join(g['layers'])})" if len(g["layers"]) > 1 else "")
        for name, g in section["groups"].items()
        if g["kept"] != g["channels"]
    ]
    if len(groups) > SHOWN_GROUPS:
        groups[SHOWN_GROUPS:] = [f"{len(groups) - SHOWN_GROUPS} more (the JSON lists them)"]
    return [
        f"{head}: FLOPs {si(section['flops_before'])} -> {si(section['flops_after'])} "
        f"(-{section['flops_removed']:.1%}), keep ratio {section['keep_ratio']:.2f}, "
        f"params {section['params_before']} -> {section['params_after']} (before training)",
        "channel groups pruned: " + ("; ".join(groups) or "none"),
    ]
