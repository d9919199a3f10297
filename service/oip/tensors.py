"""The Open Inference Protocol's tensors, independent of the transport: what a request asks for and what an
answer holds, and the two binary encodings both transports share (raw little-endian FP32, and BYTES as
elements each prefixed by its 4-byte little-endian length, the layout of gRPC `raw_input_contents` and of
Triton's REST binary-data extension).

Everything here raises MalformedRequest (400) for a tensor that does not add up: a client's mistake, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import MalformedRequest

BYTES = "BYTES"
FP32 = "FP32"
_LENGTH = struct.Struct("<I")
_MAX_SHAPE_ELEMENTS = 2**31  # far above any limit; keeps math.prod of hostile shapes from running away


@dataclass(slots=True)
class InferInput:
    """One input tensor. `data` is a list of bytes for BYTES, a flat float32 array for FP32."""

    name: str
    datatype: str
    shape: list[int]
    data: list[bytes] | np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class RequestedOutput:
    """An output the client asked for; `binary` is REST's per-output `binary_data` (None: the request default);
    `parameters` the others (`classification`; any other is refused, never ignored)."""

    name: str
    binary: bool | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    model_name: str
    model_version: str | None
    id: str | None
    inputs: list[InferInput]
    outputs: list[RequestedOutput] | None = None  # None: every output
    binary_output: bool = False  # REST's request-level `binary_data_output`


@dataclass(slots=True)
class OutputTensor:
    """One output tensor: `data` a float32 array for FP32, a list of bytes for BYTES."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray | list[bytes]

    def raw(self) -> bytes:
        """The binary encoding (gRPC raw_output_contents, REST binary-data extension)."""
        if isinstance(self.data, np.ndarray):
            return self.data.astype("<f4", copy=False).tobytes()
        return pack_bytes(self.data)

    def json_data(self) -> list[Any]:
        """The JSON encoding: FP32 as numbers, BYTES as UTF-8 strings (labels are text), row-major and flat."""
        if isinstance(self.data, np.ndarray):
            return list(self.data.reshape(-1).tolist())
        return [element.decode("utf-8") for element in self.data]


@dataclass(slots=True)
class InferResponse:
    model_name: str
    model_version: str
    id: str | None
    outputs: list[OutputTensor]


def check_shape(name: str, shape: Any) -> list[int]:
    """A shape is a list of non-negative integers (the request's, never -1)."""
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise MalformedRequest(f"input {name!r}: shape must be a list of non-negative integers, not {shape!r:.80}")
    if math.prod(shape) > _MAX_SHAPE_ELEMENTS:
        raise MalformedRequest(f"input {name!r}: shape {shape} is too large")
    return shape


def pack_bytes(elements: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def unpack_bytes(name: str, raw: bytes | memoryview, count: int) -> list[bytes]:
    """Split a BYTES tensor's binary form into exactly `count` elements, each `<u32 length><bytes>`."""
    view = memoryview(raw)
    elements: list[bytes] = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise MalformedRequest(f"input {name!r}: BYTES data ends inside an element's 4-byte length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise MalformedRequest(f"input {name!r}: a BYTES element says {length} bytes but fewer follow")
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    if len(elements) != count:
        raise MalformedRequest(f"input {name!r}: shape holds {count} element(s) but the data holds {len(elements)}")
    return elements


def unpack_fp32(name: str, raw: bytes | memoryview, count: int) -> np.ndarray:
    """Little-endian float32 values, exactly `count` of them."""
    if len(raw) != count * 4:
        raise MalformedRequest(f"input {name!r}: FP32 shape holds {count} value(s) ({count * 4} bytes), not {len(raw)}")
    return np.frombuffer(raw, dtype="<f4").astype(np.float32, copy=False)


def decode_raw(name: str, datatype: str, shape: list[int], raw: bytes | memoryview) -> list[bytes] | np.ndarray:
    count = math.prod(shape)
    if datatype == BYTES:
        return unpack_bytes(name, raw, count)
    if datatype == FP32:
        return unpack_fp32(name, raw, count)
    raise MalformedRequest(f"input {name!r}: datatype {datatype!r} is not served (BYTES or FP32)")


def decode_json(name: str, datatype: str, shape: list[int], data: Any) -> list[bytes] | np.ndarray:
    """JSON `data` (nested or flat, row-major). BYTES elements are base64 strings (the only way to carry an
    image in JSON), with or without the `content_type: base64` parameter; FP32 elements are numbers."""
    flat = _flatten(name, data)
    count = math.prod(shape)
    if len(flat) != count:
        raise MalformedRequest(f"input {name!r}: shape holds {count} element(s) but data holds {len(flat)}")
    if datatype == BYTES:
        elements = []
        for i, element in enumerate(flat):
            if not isinstance(element, str):
                raise MalformedRequest(f"input {name!r}: element {i} must be a base64 string")
            try:
                elements.append(base64.b64decode(element, validate=True))
            except (binascii.Error, ValueError):
                raise MalformedRequest(f"input {name!r}: element {i} is not valid base64") from None
        return elements
    if datatype == FP32:
        if not all(type(v) in (int, float) for v in flat):
            raise MalformedRequest(f"input {name!r}: FP32 data must be numbers")
        return np.asarray(flat, dtype=np.float32)
    raise MalformedRequest(f"input {name!r}: datatype {datatype!r} is not served (BYTES or FP32)")


def _flatten(name: str, data: Any) -> list[Any]:
    if not isinstance(data, list):
        raise MalformedRequest(f"input {name!r}: data must be a JSON list")
    if not any(isinstance(item, list) for item in data):
        return data
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat
