"""A PayloadRecord -> CloudEvents in HTTP binary mode, in KServe's logger shape: `ce-id` the request id, `ce-type`
`org.kubeflow.serving.inference.request` / `.response`, `ce-source`, and as extension attributes the model, its
version (and KServe's `inferenceservicename`, `component`, `endpoint`), the protocol, W3C `traceparent`
(CloudEvents' distributed-tracing extension) and, for a failed request, its error code.

The data is JSON. An image is carried in base64 while the event's images stay within the byte cap; past it, an
image is described instead: sha256, size, format, width and height (likewise a client's tensor).
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from service.payloadlog.record import PayloadRecord

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
SPEC_VERSION = "1.0"
COMPONENT = "predictor"

Event = tuple[dict[str, str], bytes]  # headers, body


def headers(record: PayloadRecord, event_type: str, source: str) -> dict[str, str]:
    found = {
        "ce-specversion": SPEC_VERSION,
        "ce-id": record.request_id,
        "ce-type": event_type,
        "ce-source": source,
        "ce-time": datetime.fromtimestamp(record.time, UTC).isoformat().replace("+00:00", "Z"),
        "ce-model": record.model,
        "ce-modelversion": record.model_version,
        "ce-inferenceservicename": record.model,
        "ce-component": COMPONENT,
        "ce-endpoint": record.protocol,
        "ce-protocol": record.protocol,
        "content-type": "application/json",
    }
    if record.traceparent:
        found["ce-traceparent"] = record.traceparent
    if event_type == RESPONSE_TYPE:
        found["ce-status"] = str(record.status)
        if record.error_code:
            found["ce-errorcode"] = record.error_code
    return found


def request_body(record: PayloadRecord, max_bytes: int) -> dict[str, Any]:
    budget = max_bytes
    inputs: list[dict[str, Any]] = []
    for i, upload in enumerate(record.uploads):
        data = upload.data
        entry: dict[str, Any] = {"kind": "image", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if upload.filename:
            entry["filename"] = upload.filename
        if i < len(record.images):
            image = record.images[i]
            entry.update(format=image.format, width=image.width, height=image.height)
        if len(data) <= budget:
            entry["data"] = base64.b64encode(data).decode("ascii")
            budget -= len(data)
        else:
            entry["truncated"] = True
        inputs.append(entry)
    if record.tensor is not None:
        raw = record.tensor.astype("<f4", copy=False).tobytes()
        entry = {
            "kind": "tensor",
            "datatype": "FP32",
            "shape": list(record.tensor.shape),
            "size": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
        }
        if len(raw) <= budget:
            entry["data"] = base64.b64encode(raw).decode("ascii")
        else:
            entry["truncated"] = True
        inputs.append(entry)
    return {
        "id": record.request_id,
        "model_name": record.model,
        "model_version": record.model_version,
        "protocol": record.protocol,
        "inputs": inputs,
    }


def response_body(record: PayloadRecord) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": record.request_id,
        "model_name": record.model,
        "model_version": record.model_version,
        "status": record.status,
    }
    if record.error_code is not None:
        body["error"] = {"code": record.error_code, "message": record.error_message or ""}
    else:
        body["outputs"] = [
            {"label": a.label, "confidence": a.confidence, "probabilities": a.probabilities} for a in record.answers
        ]
    return body


def events(record: PayloadRecord, mode: str, source: str, max_bytes: int) -> list[tuple[str, Event]]:
    """The record's events for `mode` (all | request | response), each as (kind, (headers, body))."""
    found: list[tuple[str, Event]] = []
    if mode in ("all", "request"):
        body = json.dumps(request_body(record, max_bytes), separators=(",", ":")).encode()
        found.append(("request", (headers(record, REQUEST_TYPE, source), body)))
    if mode in ("all", "response"):
        body = json.dumps(response_body(record), separators=(",", ":")).encode()
        found.append(("response", (headers(record, RESPONSE_TYPE, source), body)))
    return found
