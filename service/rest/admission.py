"""The REST door of admission control (service/dataplane/admission.py): pure ASGI, before routing.

Under a crowd most requests are refused, so a refusal must cost next to nothing: FastAPI's routing,
dependency injection and exception handlers take about a millisecond a request, which a crowd of 600 clients
turns into most of a core. This middleware recognises the inference routes by their path, admits or refuses
before the body is read (nothing of it is buffered beyond what uvicorn already holds), and answers a refusal
with the JSON error body, `Retry-After` and the `overloaded` rejection count itself. An admitted request goes
on with its permit in the ASGI scope (`permit_of`); the permit is released when the route's answer is sent.

What it leaves to the routes (so the answer is the same with or without it): unknown or unready models,
draining, a malformed `X-Request-Timeout`, any method but POST.

After a refused request the connection stays open and uvicorn reads and drops the unread body before the next
request on it, so a client that sends its whole body before reading (most do) gets its 503 and keeps its
connection. A client that asked `Expect: 100-continue` never sends the body: it is told `Connection: close`,
since the server cannot otherwise tell whether body bytes will follow.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from service.dataplane.admission import Deadline, Permit, parse_timeout
from service.errors import CatdogError, Overloaded, error_body
from service.oip.errors import error_json

PERMIT_KEY = "admission_permit"
# catdog's own routes and the Open Inference Protocol's infer (with or without a version).
INFERENCE_PATH = re.compile(
    r"^/(?:predict/(?P<seed>[^/]+)|v1/models/(?P<v1>[^/]+)/predict|v2/models/(?P<v2>[^/]+)(?:/versions/[^/]+)?/infer)$"
)


def declared_body_bytes(content_length: bytes | str | None, limit: int) -> int:
    """What an admitted request's body will hold in memory, for admission's byte budget: its Content-Length capped
    by the upload limit (a longer body gets 413 as it is read), or the limit when it declares none (chunked)."""
    value = content_length.decode("latin-1") if isinstance(content_length, bytes) else content_length
    return min(int(value), limit) if value is not None and value.isdigit() else limit


def permit_of(scope: Scope) -> Permit | None:
    """The permit the door gave this request, if it went through the door."""
    permit = scope.get("state", {}).get(PERMIT_KEY)
    return permit if isinstance(permit, Permit) else None


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = INFERENCE_PATH.match(_route_path(scope))
        state: Any = getattr(scope.get("app"), "state", None)
        if match is None or state is None:
            await self.app(scope, receive, send)
            return
        name = match.group("seed") or match.group("v1") or match.group("v2")
        model = state.repository.models.get(name)
        if model is None or model.status != "ready" or state.lifecycle.draining:
            await self.app(scope, receive, send)  # the route answers 404 / 503 not_ready / 503 draining
            return
        settings = state.settings
        headers = dict(scope["headers"])
        try:
            timeout = parse_timeout(_text(headers.get(b"x-request-timeout")))
        except CatdogError:
            await self.app(scope, receive, send)  # the route answers the 400
            return
        body_bytes = declared_body_bytes(headers.get(b"content-length"), settings.max_upload_bytes)
        deadline = Deadline.within(timeout, cap=settings.request_timeout_s)
        try:
            permit = state.classifier.admission.admit(name, deadline, body_bytes=body_bytes)
        except Overloaded as exc:
            close = headers.get(b"expect", b"").lower() == b"100-continue"
            await _refuse(scope, send, state, name, exc, close=close, oip=match.group("v2") is not None)
            return
        scope.setdefault("state", {})[PERMIT_KEY] = permit
        try:
            await self.app(scope, receive, send)
        finally:
            permit.release()


async def _refuse(
    scope: Scope, send: Send, state: Any, model: str, exc: Overloaded, *, close: bool, oip: bool = False
) -> None:
    request_state = scope.setdefault("state", {})
    request_state.setdefault("access", {}).update(model=model, error=exc.code)
    state.metrics.rejected.labels(model, exc.reason).inc()
    # The Open Inference Protocol's routes answer in its own error shape (service/oip/errors.py).
    document = error_json(exc) if oip else error_body(exc.code, exc.message, str(request_state.get("request_id", "")))
    body = json.dumps(document).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(exc.retry_after_s or 1).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _route_path(scope: Scope) -> str:
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")
