"""The ``tf.train.Example`` wire format of dataset records, written by hand for speed."""

from __future__ import annotations

import logging

import numpy as np

from tfopt.data.schema import FEATURE_KEY, LABEL_KEY

log = logging.getLogger(__name__)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _field(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


class ExampleEncoder:
    """Serializes ``tf.train.Example{x: bytes_list[raw float32], label: int64_list}``
    directly in the protobuf wire format: a per-label header followed by the
    raw feature bytes, ~20x faster than building protos one by one.

    The bytes are a valid ``tf.train.Example`` (tests check them against
    ``tf.train.Example.FromString`` and ``tf.io.parse_single_example``).
    """

    def __init__(self, data_len: int):
        self.data_len = data_len
        # BytesList{value: [data]}, Feature{bytes_list}, map entry{key "x", value}
        bl_len = 1 + len(_varint(data_len)) + data_len
        feat_len = 1 + len(_varint(bl_len)) + bl_len
        entry_value_head = (
            b"\x12" + _varint(feat_len) + b"\x0a" + _varint(bl_len) + b"\x0a" + _varint(data_len)
        )
        entry_payload_len = (
            len(_field(0x0A, FEATURE_KEY.encode())) + len(entry_value_head) + data_len
        )
        self._x_head = (
            b"\x0a"
            + _varint(entry_payload_len)
            + _field(0x0A, FEATURE_KEY.encode())
            + entry_value_head
        )
        self._x_entry_len = len(self._x_head) + data_len
        self._heads: dict[int, bytes] = {}

    def head(self, label: int) -> bytes:
        h = self._heads.get(label)
        if h is None:
            feature = _field(0x1A, _field(0x0A, _varint(label)))  # Feature{int64_list{[label]}}
            entry = _field(0x0A, _field(0x0A, LABEL_KEY.encode()) + _field(0x12, feature))
            features_len = len(entry) + self._x_entry_len
            h = b"\x0a" + _varint(features_len) + entry + self._x_head
            self._heads[label] = h
        return h

    def encode(self, x: np.ndarray, y: np.ndarray) -> list[bytes]:
        """Serialized Examples for rows of float32 ``x`` (C-contiguous) and labels ``y``."""
        raw = x.tobytes()
        d = self.data_len
        heads = [self.head(label) for label in y.tolist()]
        return [h + raw[i * d : (i + 1) * d] for i, h in enumerate(heads)]


def encode_example(x: np.ndarray, y: int) -> bytes:
    """One serialized ``tf.train.Example`` in the dataset format (float32 ``x``, int64 label)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return ExampleEncoder(x.size * 4).encode(x.reshape(1, -1), np.asarray([y]))[0]
