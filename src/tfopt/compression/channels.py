"""Channel bookkeeping for structured pruning: which channels of which layers must move together.

Every tensor's last axis is a *channel space*. A producer (Conv2D, Dense,
SeparableConv2D) opens a new space of its filters / units; layers that act per channel
(BatchNormalization, activations, pooling, padding, Dropout, DepthwiseConv2D with
multiplier 1, global pooling) pass their input's space through; ``Add`` / ``Multiply``
/ ``Subtract`` / ``Average`` / ``Maximum`` join their inputs' spaces (all members keep the
same channels, or the group is left alone); ``Concatenate`` and ``Flatten`` make derived
spaces whose indices follow from their parts. A space that reaches a layer this module
does not know (Reshape, Lambda, LayerNormalization over channels, a model output, the
model input) is frozen, with the reason, and so is every space joined to it.

:func:`trace` reads a flattened tf_keras functional model into :class:`Groups`;
:func:`rebuild` makes the smaller dense model from the channels kept per group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tfopt._keras import keras

# layers that act on each channel on its own: the output space is the input's
PER_CHANNEL = (
    keras.layers.BatchNormalization,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.PReLU,
    keras.layers.ELU,
    keras.layers.Softmax,
    keras.layers.Dropout,
    keras.layers.SpatialDropout2D,
    keras.layers.GaussianNoise,
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.MaxPooling1D,
    keras.layers.AveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalMaxPooling1D,
    keras.layers.ZeroPadding2D,
    keras.layers.Cropping2D,
    keras.layers.UpSampling2D,
)
MERGE = (
    keras.layers.Add,
    keras.layers.Multiply,
    keras.layers.Subtract,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
)
PRODUCERS = (keras.layers.Conv2D, keras.layers.Dense, keras.layers.SeparableConv2D)


@dataclass
class Space:
    """A channel space: a leaf (its own channels) or derived from others."""

    size: int
    parts: list[Space] = field(default_factory=list)  # Concatenate: in order
    base: Space | None = None  # Flatten: the channels, repeated per position
    positions: int = 1
    parent: Space | None = None  # union-find over leaves
    frozen: str = ""  # why these channels stay (the group's, on its root)

    def root(self) -> Space:
        node = self
        while node.parent is not None:
            node = node.parent
        return node

    def leaves(self) -> list[Space]:
        if self.parts:
            return [leaf for part in self.parts for leaf in part.leaves()]
        if self.base is not None:
            return self.base.leaves()
        return [self]


def _union(a: Space, b: Space) -> None:
    ra, rb = a.root(), b.root()
    if ra is not rb:
        rb.parent = ra
        ra.frozen = ra.frozen or rb.frozen


def _freeze(space: Space, why: str) -> None:
    for leaf in space.leaves():
        root = leaf.root()
        root.frozen = root.frozen or why


@dataclass
class Groups:
    """The traced model: each layer's input and output space, and the prunable groups.

    Attributes:
        spaces_in / spaces_out: layer name -> the space of its (first) input / its output.
        producers: group root -> the producer layers whose filters are that group's.
        order: the groups in model order (the first producer's).
    """

    spaces_in: dict[str, Space]
    spaces_out: dict[str, Space]
    producers: dict[int, list[str]]
    roots: dict[int, Space]
    order: list[int]

    def prunable(self) -> list[int]:
        return [g for g in self.order if not self.roots[g].frozen]

    def group_of(self, layer: str) -> int | None:
        space = self.spaces_out.get(layer)
        if space is None or space.parts or space.base is not None:
            return None
        gid = id(space.root())
        return gid if gid in self.roots else None

    def why_frozen(self, layer: str) -> str:
        space = self.spaces_out.get(layer)
        return space.root().frozen if space is not None else "no output"


def trace(model: keras.Model) -> Groups:
    """Read ``model`` (flattened functional tf_keras) into channel spaces and groups."""
    from tfopt.compression.common import graph_links

    inbound, _ = graph_links(model)
    spaces_in: dict[str, Space] = {}
    out: dict[str, Space] = {}
    for layer in model.layers:
        name = layer.name
        if isinstance(layer, keras.layers.InputLayer):
            out[name] = Space(int(layer.output.shape[-1]), frozen="the model input")
            continue
        ins = [out[i.name] for i in inbound[name] if i.name in out]
        if not ins:  # a layer outside the model's own graph
            continue
        spaces_in[name] = ins[0]
        out[name] = _space_after(layer, ins)
    for tensor in model.outputs:
        _freeze(out[tensor._keras_history.layer.name], "a model output (the classes)")
    producers: dict[int, list[str]] = {}
    roots: dict[int, Space] = {}
    order: list[int] = []
    for layer in model.layers:
        if isinstance(layer, PRODUCERS) and layer.name in out:
            root = out[layer.name].root()
            if id(root) not in producers:
                order.append(id(root))
                roots[id(root)] = root
            producers.setdefault(id(root), []).append(layer.name)
    return Groups(spaces_in, out, producers, roots, order)


def _space_after(layer, ins: list[Space]) -> Space:
    size = int(layer.output.shape[-1]) if layer.output.shape.rank else 0
    if isinstance(layer, keras.layers.Conv2DTranspose):  # a Conv2D with (h, w, out, in)
        _freeze(ins[0], f"{layer.name} (Conv2DTranspose) is not pruned")
        return Space(size, frozen=f"{layer.name} (Conv2DTranspose) is not pruned")
    if isinstance(layer, keras.layers.DepthwiseConv2D):  # before Conv2D: it is one
        if layer.depth_multiplier == 1:
            return ins[0]
        _freeze(ins[0], f"{layer.name}: depth_multiplier {layer.depth_multiplier}")
        return Space(size, frozen=f"{layer.name}: depth_multiplier {layer.depth_multiplier}")
    if isinstance(layer, keras.layers.SeparableConv2D) and layer.depth_multiplier != 1:
        _freeze(ins[0], f"{layer.name}: depth_multiplier {layer.depth_multiplier}")
        return Space(size)
    if isinstance(layer, keras.layers.Conv2D) and layer.groups != 1:
        _freeze(ins[0], f"{layer.name}: grouped convolution")
        return Space(size, frozen=f"{layer.name}: grouped convolution")
    if isinstance(layer, PRODUCERS):
        return Space(size)
    if isinstance(layer, keras.layers.BatchNormalization) and layer.axis not in ([-1], [3], -1):
        _freeze(ins[0], f"{layer.name}: normalizes another axis")
        return Space(size, frozen=f"{layer.name}: normalizes another axis")
    if isinstance(layer, PER_CHANNEL) and len(ins) == 1:
        return ins[0]
    if isinstance(layer, MERGE):
        for other in ins[1:]:
            for a, b in zip(ins[0].leaves(), other.leaves(), strict=False):
                _union(a, b)
            if (ins[0].parts or ins[0].base) or (other.parts or other.base):
                _freeze(ins[0], f"{layer.name}: joins derived channels")
                _freeze(other, f"{layer.name}: joins derived channels")
        return ins[0]
    if isinstance(layer, keras.layers.Concatenate) and layer.axis in (
        -1,
        len(layer.output.shape) - 1,
    ):
        return Space(size, parts=list(ins))
    if isinstance(layer, keras.layers.Flatten) and len(ins) == 1:
        positions = int(np.prod(layer.input.shape[1:-1])) if layer.input.shape.rank > 2 else 1
        return Space(size, base=ins[0], positions=positions)
    why = f"{layer.name} ({type(layer).__name__}) is not known to act per channel"
    for space in ins:
        _freeze(space, why)
    return Space(size, frozen=why)


def kept_indices(space: Space, keep: dict[int, np.ndarray]) -> np.ndarray:
    """The kept indices of ``space`` (sorted), given each group's kept channels."""
    if space.parts:
        pieces, offset = [], 0
        for part in space.parts:
            pieces.append(kept_indices(part, keep) + offset)
            offset += part.size
        return np.concatenate(pieces)
    if space.base is not None:
        channels = kept_indices(space.base, keep)
        size = space.base.size
        return np.concatenate([channels + p * size for p in range(space.positions)])
    return keep.get(id(space.root()), np.arange(space.size))


def rebuild(model: keras.Model, groups: Groups, keep: dict[int, np.ndarray]) -> keras.Model:
    """A new, smaller model: each producer keeps its group's channels, every dependent
    layer the matching slices of its weights. ``keep``: group -> sorted kept indices."""

    def clone(layer):
        config = layer.get_config()
        space = groups.spaces_out.get(layer.name)
        if isinstance(layer, PRODUCERS) and space is not None:
            key = "units" if isinstance(layer, keras.layers.Dense) else "filters"
            config[key] = len(kept_indices(space, keep))
        return layer.__class__.from_config(config)

    new = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if not layer.weights or layer.name not in groups.spaces_in:
            continue
        idx_in = kept_indices(groups.spaces_in[layer.name], keep)
        idx_out = kept_indices(groups.spaces_out[layer.name], keep)
        full_in = groups.spaces_in[layer.name].size
        weights = [_slice(layer, w, idx_in, idx_out, full_in) for w in layer.get_weights()]
        new.get_layer(layer.name).set_weights(weights)
    return new


def _slice(
    layer, w: np.ndarray, idx_in: np.ndarray, idx_out: np.ndarray, full_in: int
) -> np.ndarray:
    """The part of weight ``w`` of ``layer`` that the kept channels use."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return w[:, :, idx_in, :] if w.ndim == 4 else w[idx_in]
    if isinstance(layer, keras.layers.SeparableConv2D):
        if w.ndim == 1:
            return w[idx_out]
        if w.shape[0] == 1 and w.shape[1] == 1 and w.shape[-1] == layer.filters:  # pointwise
            return w[:, :, idx_in, :][..., idx_out]
        return w[:, :, idx_in, :]  # depthwise
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
        if w.ndim == 1:
            return w[idx_out]
        return np.take(np.take(w, idx_in, axis=-2), idx_out, axis=-1)
    if w.ndim >= 1 and w.shape[-1] == full_in:  # per-channel (BatchNormalization, PReLU)
        return np.take(w, idx_in, axis=-1)
    return w
