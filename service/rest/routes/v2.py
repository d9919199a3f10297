"""The Open Inference Protocol (KServe v2 / Triton) over REST: health, metadata and infer under /v2.

JSON bodies (with or without a Content-Type: tritonclient sends none) and Triton's binary-data extension: the
`Inference-Header-Content-Length` header says how many leading bytes are the JSON header; each input with a
`binary_data_size` parameter takes that many of the bytes that follow, in input order (BYTES elements each
prefixed by a 4-byte little-endian length, FP32 raw little-endian). Outputs are binary when asked for
(`binary_data_output` on the request, `binary_data` on a requested output), each then with its own
`binary_data_size`. Errors are `{"error": "..."}` with the service's status codes (service/rest/errors.py).

The protocol is described by its own OpenAPI document (KServe's rest_predict_v2.yaml), so these routes stay out of
catdog's /openapi.json.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.dataplane.admission import Stage
from service.dataplane.dataplane import DataPlane
from service.errors import MalformedRequest
from service.oip.protocol import OpenInference
from service.oip.tensors import (
    InferInput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    check_shape,
    decode_json,
    decode_raw,
)
from service.rest.admission import permit_of
from service.rest.requests import declared_body_bytes, note, parse_timeout
from service.rest.uploads import read_body
from service.tracing import context as tracing

HEADER_LENGTH = "inference-header-content-length"
PROTOCOL = "oip_rest"


def router(data_plane: DataPlane) -> APIRouter:
    """The protocol's routes under /v2 over `data_plane`; a raised CatdogError leaves by service/rest/errors.py."""
    oip = OpenInference(data_plane)
    routes = APIRouter(prefix="/v2", tags=["open inference protocol"], include_in_schema=False)

    async def server_metadata() -> JSONResponse:
        return JSONResponse(oip.server_metadata())

    async def server_live() -> JSONResponse:
        return JSONResponse({"live": True})

    async def server_ready() -> JSONResponse:
        ready = data_plane.ready()
        return JSONResponse({"ready": ready}, status_code=200 if ready else 503)

    async def model_metadata(name: str, version: str | None = None) -> JSONResponse:
        return JSONResponse(oip.model_metadata(name, version))

    async def model_ready(name: str, version: str | None = None) -> JSONResponse:
        """200 `{"name", "ready": true}` when ready; 503 with `"ready": false` while loading, failed or draining
        (the protocol says any 4xx/5xx means not ready; KServe answers 503 too)."""
        ready = data_plane.model_ready(name, oip.version(name, version))
        return JSONResponse({"name": name, "ready": ready}, status_code=200 if ready else 503)

    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        """Parse, admit, read, classify, encode."""
        note(request, model=name, protocol=PROTOCOL)
        model = data_plane.model_for_work(name, oip.version(name, version))
        # Admitted before the body is read: by the door (service/rest/admission.py) or, without it, here.
        timeout = parse_timeout(request.headers.get("x-request-timeout"))
        max_bytes = data_plane.settings.max_upload_bytes
        size = declared_body_bytes(request.headers.get("content-length"), max_bytes)
        permit = permit_of(request.scope)
        async with data_plane.span(model, PROTOCOL, permit=permit, timeout_s=timeout, body_bytes=size) as permit:
            with permit.track(Stage.READING):
                body = await read_body(request, max_bytes)
            infer_request = parse_infer_request(body, request.headers.get(HEADER_LENGTH), name, version)
            if infer_request.id is not None:
                note(request, oip_id=infer_request.id)
            answer = await oip.infer(model, infer_request, permit, partial(note, request))
        with tracing.stage("catdog.encode"):
            content, header_length = encode_infer_response(answer, infer_request)
        if header_length is None:
            return Response(content, media_type="application/json")
        headers = {"Inference-Header-Content-Length": str(header_length)}
        return Response(content, media_type="application/octet-stream", headers=headers)

    async def model_config(name: str, version: str | None = None) -> JSONResponse:
        """Triton's model configuration (service/oip/config.py)."""
        return JSONResponse(oip.model_config(name, version))

    async def model_statistics(name: str | None = None, version: str | None = None) -> JSONResponse:
        """Triton's statistics (service/oip/statistics.py): every ready model under /v2/models/stats."""
        return JSONResponse(oip.statistics(name, version))

    routes.add_api_route("", server_metadata, methods=["GET"])
    routes.add_api_route("/", server_metadata, methods=["GET"])  # the protocol's OpenAPI spells it /v2/
    routes.add_api_route("/health/live", server_live, methods=["GET"])
    routes.add_api_route("/health/ready", server_ready, methods=["GET"])
    routes.add_api_route("/models/stats", model_statistics, methods=["GET"])  # before /models/{name}: not a name
    for prefix in ("/models/{name}", "/models/{name}/versions/{version}"):
        routes.add_api_route(prefix, model_metadata, methods=["GET"])
        routes.add_api_route(f"{prefix}/config", model_config, methods=["GET"])
        routes.add_api_route(f"{prefix}/stats", model_statistics, methods=["GET"])
        routes.add_api_route(f"{prefix}/ready", model_ready, methods=["GET"])
        routes.add_api_route(f"{prefix}/infer", infer, methods=["POST"])
    return routes


def parse_infer_request(body: bytes, header_length: str | None, model: str, version: str | None) -> InferRequest:
    """A REST infer body (JSON, or JSON header + binary tensors) -> InferRequest. Raises MalformedRequest."""
    view = memoryview(body)
    if header_length is None:
        header, binary = view, view[len(view) :]
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise MalformedRequest(
                f"Inference-Header-Content-Length must be a byte count within the body ({len(body)}), "
                f"not {header_length[:40]!r}"
            )
        header, binary = view[: int(header_length)], view[int(header_length) :]
    try:
        document = json.loads(bytes(header))
    except (ValueError, UnicodeDecodeError):
        raise MalformedRequest("the request is not valid JSON (or Inference-Header-Content-Length is wrong)") from None
    if not isinstance(document, dict):
        raise MalformedRequest("the request must be a JSON object")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise MalformedRequest("the request needs a non-empty 'inputs' list")
    inputs: list[InferInput] = []
    offset = 0
    for i, raw in enumerate(raw_inputs):
        if not isinstance(raw, dict):
            raise MalformedRequest(f"inputs[{i}] must be an object")
        name, datatype = raw.get("name"), raw.get("datatype")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise MalformedRequest(f"inputs[{i}] needs a string 'name' and 'datatype'")
        shape = check_shape(name, raw.get("shape"))
        parameters = _parameters(raw, f"inputs[{i}]")
        size = parameters.get("binary_data_size")
        if size is not None:
            if type(size) is not int or size < 0 or offset + size > len(binary):
                raise MalformedRequest(f"input {name!r}: binary_data_size {size!r} does not fit the binary data")
            data = decode_raw(name, datatype, shape, binary[offset : offset + size])
            offset += size
        elif "data" in raw:
            data = decode_json(name, datatype, shape, raw["data"])
        else:
            raise MalformedRequest(f"input {name!r} has neither 'data' nor a binary_data_size parameter")
        inputs.append(InferInput(name, datatype, shape, data, parameters))
    if offset != len(binary):
        raise MalformedRequest(f"{len(binary) - offset} byte(s) of binary data belong to no input")
    outputs: list[RequestedOutput] | None = None
    if "outputs" in document:
        if not isinstance(document["outputs"], list):
            raise MalformedRequest("'outputs' must be a list")
        outputs = []
        for i, raw in enumerate(document["outputs"]):
            if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
                raise MalformedRequest(f"outputs[{i}] needs a string 'name'")
            parameters = dict(_parameters(raw, f"outputs[{i}]"))
            binary_flag = parameters.pop("binary_data", None)
            wants_binary = None if binary_flag is None else bool(binary_flag)
            outputs.append(RequestedOutput(raw["name"], wants_binary, parameters))
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise MalformedRequest("'id' must be a string")
    binary_output = bool(_parameters(document, "the request").get("binary_data_output", False))
    return InferRequest(model, version, request_id, inputs, outputs or None, binary_output)


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    parameters = obj.get("parameters", {})
    if not isinstance(parameters, dict):
        raise MalformedRequest(f"{where}: 'parameters' must be an object")
    return parameters


def encode_infer_response(answer: InferResponse, request: InferRequest) -> tuple[bytes, int | None]:
    """JSON, or (when an output is asked for in binary) the JSON header + the binary outputs and its length."""
    binary_of = {o.name: o.binary for o in request.outputs or []}
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for tensor in answer.outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        binary = binary_of.get(tensor.name)
        if binary if binary is not None else request.binary_output:
            blob = tensor.raw()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = tensor.json_data()
        outputs.append(entry)
    document: dict[str, Any] = {"model_name": answer.model_name, "model_version": answer.model_version}
    if answer.id is not None:
        document["id"] = answer.id
    document["outputs"] = outputs
    header = json.dumps(document, separators=(",", ":")).encode()
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)
