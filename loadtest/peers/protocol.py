"""How a JPEG reaches each server (the whole HTTP/1.1 request, pre-built for the load generator) and how its
answer is read back (probabilities in the card's label order), plus the check of a peer's answer against
catdog's."""

from __future__ import annotations

import base64
import json
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPResponse
from typing import Any
from urllib.parse import urlsplit

from loadtest import loadgen

ANSWER_TOLERANCE = 1e-4
"""The peers run catdog's own preprocessing and the same ONNX Runtime session options, so only float noise
separates their probabilities from catdog's."""


def post(url: str, path: str, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> bytes:
    """One complete POST request, as bytes."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {urlsplit(url).netloc}", f"Content-Type: {content_type}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _probabilities_json(body: bytes, labels: list[str]) -> list[float]:
    """{"probabilities": {label: p}}: catdog's answer, and the one the LitServe, BentoML and Ray servers give
    (a batchable BentoML API takes a list of one image and answers a list of one)."""
    answer = json.loads(body)
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    probabilities = answer["probabilities"]
    return [float(probabilities[label]) for label in labels]


def _oip_output(body: bytes, labels: list[str]) -> list[float]:
    """An Open Inference Protocol response with its first output as JSON data, one row."""
    data = [float(x) for x in json.loads(body)["outputs"][0]["data"]]
    if len(data) != len(labels):
        raise ValueError(f"expected {len(labels)} probabilities, got {len(data)}")
    return data


def _oip_json(input_parameters: dict[str, str] | None) -> Callable[[str, str, bytes, str, bool], bytes]:
    def build(url: str, path: str, jpeg: bytes, filename: str, batched: bool) -> bytes:
        tensor: dict[str, Any] = {"name": "image", "shape": [1], "datatype": "BYTES"}
        if input_parameters:
            tensor["parameters"] = input_parameters
        tensor["data"] = [base64.b64encode(jpeg).decode()]
        body = json.dumps({"inputs": [tensor]}).encode()
        return post(url, path, body, "application/json")

    return build


def _oip_binary(url: str, path: str, jpeg: bytes, filename: str, batched: bool) -> bytes:
    """Triton's binary tensor extension: the JSON header, then the BYTES element (4-byte length, then the
    data); the output comes back as JSON."""
    shape = [1, 1] if batched else [1]
    header = {
        "inputs": [
            {"name": "image", "shape": shape, "datatype": "BYTES", "parameters": {"binary_data_size": len(jpeg) + 4}}
        ],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": False}}],
    }
    head = json.dumps(header).encode()
    body = head + struct.pack("<I", len(jpeg)) + jpeg
    extra = {"Inference-Header-Content-Length": str(len(head))}
    return post(url, path, body, "application/octet-stream", extra)


def _multipart(url: str, path: str, jpeg: bytes, filename: str, batched: bool) -> bytes:
    return loadgen.multipart_request(url, path, jpeg, filename)


def _raw(url: str, path: str, jpeg: bytes, filename: str, batched: bool) -> bytes:
    return post(url, path, jpeg, "image/jpeg")


@dataclass(frozen=True, slots=True)
class Encoding:
    describe: str
    build: Callable[[str, str, bytes, str, bool], bytes]
    parse: Callable[[bytes, list[str]], list[float]]


ENCODINGS: dict[str, Encoding] = {
    "multipart": Encoding("multipart/form-data upload (field `file`)", _multipart, _probabilities_json),
    "oip-json-base64": Encoding("OIP v2 JSON, BYTES tensor base64", _oip_json(None), _oip_output),
    "oip-json-base64-mlserver": Encoding(
        "OIP v2 JSON, BYTES tensor base64 (content_type base64)", _oip_json({"content_type": "base64"}), _oip_output
    ),
    "oip-binary": Encoding("OIP v2 + binary tensor extension (raw bytes)", _oip_binary, _oip_output),
    "raw": Encoding("raw JPEG as the HTTP body", _raw, _probabilities_json),
}


def exchange(url: str, request: bytes, timeout: float = 30.0) -> tuple[int, bytes]:
    """Send one pre-built request on a fresh connection; (status, body)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout) as sock:
        sock.sendall(request)
        response = HTTPResponse(sock)
        response.begin()
        if response.status == 200 and response.getheader("Transfer-Encoding", "").lower() == "chunked":
            raise ValueError("the answer came chunked; the load generator reads Content-Length answers only")
        return response.status, response.read()


def answer_difference(answer: list[float], reference: list[float]) -> float:
    """Largest absolute difference between two probability vectors (inf if their lengths differ)."""
    if len(answer) != len(reference):
        return float("inf")
    return max((abs(a - b) for a, b in zip(answer, reference, strict=True)), default=0.0)
