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

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from service.dataplane.admission import Permit
from service.dataplane.dataplane import DataPlane
from service.errors import CatdogError, Overloaded
from service.rest.errors import refuse
from service.rest.requests import declared_body_bytes, header, parse_timeout, route_path

PERMIT_KEY = "admission_permit"
# catdog's own routes and the Open Inference Protocol's infer (with or without a version).
INFERENCE_PATH = re.compile(
    r"^/(?:predict/(?P<seed>[^/]+)|v1/models/(?P<v1>[^/]+)(?:/versions/[^/]+)?/predict"
    r"|v2/models/(?P<v2>[^/]+)(?:/versions/[^/]+)?/infer)$"
)


def permit_of(scope: Scope) -> Permit | None:
    """The permit the door gave this request, if it went through the door."""
    permit = scope.get("state", {}).get(PERMIT_KEY)
    return permit if isinstance(permit, Permit) else None


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, data_plane: DataPlane) -> None:
        self.app = app
        self.data_plane = data_plane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        match = INFERENCE_PATH.match(route_path(scope))
        if match is None:
            await self.app(scope, receive, send)
            return
        name = match.group("seed") or match.group("v1") or match.group("v2")
        data_plane = self.data_plane
        if not data_plane.takes_work(name):
            await self.app(scope, receive, send)  # the route answers 404 / 503 not_ready / 503 draining
            return
        try:
            timeout = parse_timeout(header(scope, b"x-request-timeout"))
        except CatdogError:
            await self.app(scope, receive, send)  # the route answers the 400
            return
        body_bytes = declared_body_bytes(header(scope, b"content-length"), data_plane.settings.max_upload_bytes)
        try:
            permit = data_plane.admit(name, timeout, body_bytes=body_bytes)
        except Overloaded as exc:
            close = (header(scope, b"expect") or "").lower() == "100-continue"
            await refuse(scope, send, data_plane, name, exc, close=close)
            return
        scope.setdefault("state", {})[PERMIT_KEY] = permit
        try:
            await self.app(scope, receive, send)
        finally:
            permit.release()
