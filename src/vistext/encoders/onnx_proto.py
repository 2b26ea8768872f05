"""The few ONNX protobuf messages vistext writes, encoded by hand (the protobuf wire format is small).

Writing a graph needs no ``onnx`` package: nodes, attributes, inputs, outputs and weights are encoded here
directly, and the weights go to a ``.data`` file beside the graph that ONNX Runtime maps at load (no copy
into the protobuf, no 2 GB limit). Field numbers are those of ``onnx.proto`` (proto2; repeated scalars are
written unpacked, which every protobuf reader accepts). ONNX Runtime checks the result when it loads it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

ELEMENT_TYPES = {np.dtype(np.float32): 1, np.dtype(np.uint8): 2, np.dtype(np.int64): 7, np.dtype(np.bool_): 9}
IR_VERSION = 8  # what ONNX Runtime 1.18 and later read
ALIGN = 4096  # each weight starts on a page boundary in the data file, so ONNX Runtime can map it


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf writes it
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(int(value))


def _bytes(number: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _header(number: int, length: int) -> bytes:
    """A length-delimited field's tag and length, for a payload written separately."""
    return _varint(number << 3 | 2) + _varint(length)


def _float(number: int, value: float) -> bytes:
    return _varint(number << 3 | 5) + struct.pack("<f", value)


def _attribute(name: str, value: Any) -> bytes:
    """AttributeProto: name 1, f 2, i 3, s 4, floats 7, ints 8, type 20 (FLOAT 1, INT 2, STRING 3, INTS 7)."""
    if isinstance(value, bool | int | np.integer):
        return _bytes(1, name) + _int(3, int(value)) + _int(20, 2)
    if isinstance(value, float | np.floating):
        return _bytes(1, name) + _float(2, float(value)) + _int(20, 1)
    if isinstance(value, str):
        return _bytes(1, name) + _bytes(4, value) + _int(20, 3)
    return _bytes(1, name) + b"".join(_int(8, int(v)) for v in value) + _int(20, 7)


@dataclass
class Node:
    kind: str
    inputs: Sequence[str]
    outputs: Sequence[str]
    attributes: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        """NodeProto: input 1, output 2, op_type 4, attribute 5."""
        parts = [_bytes(1, name) for name in self.inputs] + [_bytes(2, name) for name in self.outputs]
        parts.append(_bytes(4, self.kind))
        parts += [_bytes(5, _attribute(k, v)) for k, v in self.attributes.items()]
        return b"".join(parts)


def value_info(name: str, element: int, shape: Sequence[int | str]) -> bytes:
    """ValueInfoProto (name 1, type 2) of a tensor: TypeProto.tensor_type 1 (elem_type 1, shape 2 of dims 1,
    each dim_value 1 or dim_param 2)."""
    dims = b"".join(_bytes(1, _bytes(2, d) if isinstance(d, str) else _int(1, d)) for d in shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, element) + _bytes(2, dims)))


def _tensor(name: str, array: np.ndarray, location: str | None, offset: int) -> bytes:
    """TensorProto: dims 1, data_type 2, name 8, raw_data 9, external_data 13 (key 1, value 2), data_location 14."""
    head = b"".join(_int(1, d) for d in array.shape) + _int(2, ELEMENT_TYPES[array.dtype]) + _bytes(8, name)
    if location is None:
        return head + _bytes(9, array.tobytes())
    entries = (("location", location), ("offset", str(offset)), ("length", str(array.nbytes)))
    return head + b"".join(_bytes(13, _bytes(1, k) + _bytes(2, v)) for k, v in entries) + _int(14, 1)


def _initializers(weights: dict[str, np.ndarray], data: BinaryIO | None, location: str) -> list[bytes]:
    """The weights as TensorProtos: inline, or (with ``data``) written to the data file and referenced there."""
    tensors = []
    offset = 0
    for key, array in weights.items():
        if data is None or array.nbytes < 1024:
            tensors.append(_tensor(key, array, None, 0))
            continue
        offset += -offset % ALIGN
        data.seek(offset)
        data.write(np.ascontiguousarray(array).data.cast("B"))  # no copy of a large weight
        tensors.append(_tensor(key, array, location, offset))
        offset += array.nbytes
    return tensors


def write_model(
    path: Path,
    name: str,
    nodes: Iterable[Node],
    inputs: Iterable[bytes],
    outputs: Iterable[bytes],
    weights: dict[str, np.ndarray],
    opset: int,
    external: bool,
) -> Path:
    """Write a ModelProto (ir_version 1, producer_name 2, graph 7, opset_import 8) to ``path``; ``external``:
    the weights in ``path.data`` beside it."""
    location = f"{path.name}.data"
    if external:
        with path.with_name(location).open("wb") as data:
            tensors = _initializers(weights, data, location)
    else:
        tensors = _initializers(weights, None, location)
    parts = [_bytes(1, node.encode()) for node in nodes] + [_bytes(2, name)]
    parts += [_bytes(5, t) for t in tensors] + [_bytes(11, i) for i in inputs] + [_bytes(12, o) for o in outputs]
    with path.open("wb") as file:  # the graph's parts one by one: an inline weight is never copied again
        file.write(_int(1, IR_VERSION) + _bytes(2, "vistext") + _bytes(8, _bytes(1, "") + _int(2, opset)))
        file.write(_header(7, sum(len(part) for part in parts)))
        file.writelines(parts)
    return path
