"""OIP tensor encodings, without a server: BYTES length prefixes, raw FP32, JSON data, and the REST parser's
and encoder's handling of Triton's binary-data extension. Every malformed tensor is a MalformedRequest (400)."""

from __future__ import annotations

import base64
import contextlib
import json
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.errors import MalformedRequest
from service.oip.tensors import (
    InferRequest,
    InferResponse,
    OutputTensor,
    RequestedOutput,
    check_shape,
    decode_json,
    decode_raw,
    pack_bytes,
    unpack_bytes,
)
from service.rest.routes.v2 import encode_infer_response, parse_infer_request


@given(st.lists(st.binary(max_size=64), max_size=8))
def test_bytes_round_trip(elements: list[bytes]) -> None:
    assert unpack_bytes("x", pack_bytes(elements), len(elements)) == elements


@given(st.binary(max_size=64), st.integers(0, 4))
def test_random_bytes_never_crash(raw: bytes, count: int) -> None:
    with contextlib.suppress(MalformedRequest):
        assert len(unpack_bytes("x", raw, count)) == count


def test_bytes_framing_errors() -> None:
    with pytest.raises(MalformedRequest, match="4-byte length"):
        unpack_bytes("image", b"\x01\x00", 1)
    with pytest.raises(MalformedRequest, match="fewer follow"):
        unpack_bytes("image", struct.pack("<I", 10) + b"abc", 1)
    with pytest.raises(MalformedRequest, match="holds 2"):
        unpack_bytes("image", pack_bytes([b"a", b"b"]), 1)


def test_fp32_raw_and_json() -> None:
    values = np.arange(6, dtype=np.float32) / 3
    np.testing.assert_array_equal(decode_raw("t", "FP32", [2, 3], values.astype("<f4").tobytes()), values)
    with pytest.raises(MalformedRequest, match="24 bytes"):
        decode_raw("t", "FP32", [2, 3], b"\0" * 20)
    np.testing.assert_allclose(decode_json("t", "FP32", [2, 3], [[0, 1, 2], [3.5, 4, 5]]), [0, 1, 2, 3.5, 4, 5])
    for bad in (["1"], [True], [None], "123"):
        with pytest.raises(MalformedRequest):
            decode_json("t", "FP32", [1], bad)
    with pytest.raises(MalformedRequest, match="not served"):
        decode_raw("t", "INT64", [1], b"\0" * 8)


def test_json_bytes_are_base64() -> None:
    assert decode_json("image", "BYTES", [2], [base64.b64encode(b"\xff\xd8").decode(), ""]) == [b"\xff\xd8", b""]
    with pytest.raises(MalformedRequest, match="base64"):
        decode_json("image", "BYTES", [1], ["not base64!"])
    with pytest.raises(MalformedRequest, match="base64 string"):
        decode_json("image", "BYTES", [1], [17])


@pytest.mark.parametrize("shape", [[-1], [1.5], "3", [True], None])
def test_shapes_are_non_negative_integer_lists(shape: object) -> None:
    with pytest.raises(MalformedRequest):
        check_shape("x", shape)
    with pytest.raises(MalformedRequest, match="too large"):
        check_shape("x", [2**20, 2**20])


def test_outputs_encode_binary_and_json() -> None:
    probabilities = OutputTensor("probabilities", "FP32", [1, 2], np.array([[0.25, 0.75]], dtype=np.float32))
    label = OutputTensor("label", "BYTES", [1], [b"dog"])
    assert probabilities.raw() == struct.pack("<2f", 0.25, 0.75)
    assert label.raw() == struct.pack("<I", 3) + b"dog"
    assert (probabilities.json_data(), label.json_data()) == ([0.25, 0.75], ["dog"])
    answer = InferResponse("m", "1", "id-1", [probabilities, label])
    request = InferRequest("m", None, "id-1", [], [RequestedOutput("probabilities", True), RequestedOutput("label")])
    body, length = encode_infer_response(answer, request)
    assert length is not None
    header = json.loads(body[:length])
    assert header["id"] == "id-1"
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert header["outputs"][1]["data"] == ["dog"]
    assert body[length:] == probabilities.raw()
    anonymous = InferResponse("m", "1", None, [probabilities, label])
    body, length = encode_infer_response(anonymous, InferRequest("m", None, None, []))
    assert length is None and "id" not in json.loads(body)


def test_rest_parser_splits_header_and_binary() -> None:
    blob = pack_bytes([b"one", b"two"])
    fp32 = np.ones((1, 3, 2, 2), dtype="<f4").tobytes()
    header = json.dumps(
        {
            "id": "x",
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(blob)}},
                {"name": "input", "datatype": "FP32", "shape": [1, 3, 2, 2], "parameters": {"binary_data_size": 48}},
            ],
            "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
        }
    ).encode()
    request = parse_infer_request(header + blob + fp32, str(len(header)), "m", None)
    assert request.id == "x"
    assert request.inputs[0].data == [b"one", b"two"]
    assert isinstance(request.inputs[1].data, np.ndarray) and request.inputs[1].data.sum() == 12
    assert request.outputs == [RequestedOutput("label", True)]


@given(st.binary(max_size=200), st.one_of(st.none(), st.integers(0, 250).map(str)))
def test_rest_parser_never_crashes(body: bytes, header_length: str | None) -> None:
    with contextlib.suppress(MalformedRequest):
        parse_infer_request(body, header_length, "m", None)
