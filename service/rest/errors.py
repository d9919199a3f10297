"""The REST transport's one error path: every failure a route raises (the service's taxonomy, request
validation, Starlette's 404/405) and the admission door's refusal leave here, counted once (DataPlane.rejected).

The body follows the path: catdog's `{"error": {"code", "message", "request_id"}}` on its own routes, the Open
Inference Protocol's `{"error": "<message>"}` under /v2 (where an undecodable BYTES element is a bad tensor,
400: the protocol has no media type for a client to get wrong; catdog's own routes answer 415). No traceback or
path ever leaves. Unhandled exceptions are answered by RequestContextMiddleware, which sits inside Starlette's
ServerErrorMiddleware (where an `Exception` handler would run) and so sees them first.
"""

from __future__ import annotations

import json
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from service.dataplane.dataplane import DataPlane
from service.errors import CatdogError, Overloaded, error_body
from service.rest.requests import notes, request_id_of, route_path

log = structlog.get_logger(__name__)

OIP_PREFIX = "/v2/"


def is_oip(scope: Scope) -> bool:
    """The Open Inference Protocol's paths answer in its own error shape (tritonclient and KServe's SDK read that
    string), unmatched routes and wrong methods included."""
    path = route_path(scope)
    return path == OIP_PREFIX.rstrip("/") or path.startswith(OIP_PREFIX)


def error_document(exc: CatdogError, scope: Scope) -> tuple[int, dict[str, Any]]:
    """(status, body) of a CatdogError on this request's path."""
    if is_oip(scope):
        return (400 if exc.status == 415 else exc.status), {"error": exc.message}
    request_id = str(scope.get("state", {}).get("request_id", ""))
    return exc.status, error_body(exc.code, exc.message, request_id)


def retry_after(exc: CatdogError) -> dict[str, str] | None:
    return {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None


def register_error_handlers(app: FastAPI, data_plane: DataPlane) -> None:
    async def on_catdog_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CatdogError)  # registered for CatdogError only
        access = notes(request.scope)
        # The model a refusal counts under: what the route noted, or (on /v2, whose metadata routes note none) the
        # path's; catdog's own routes count a request that named no model as "-".
        model = access.get("model") or (request.path_params.get("name") if is_oip(request.scope) else None)
        data_plane.rejected(model, exc)
        access["error"] = exc.code
        if exc.status == 500:  # a fault, not back-pressure or a deadline: say which request failed
            log.error("request_failed", request_id=request_id_of(request), code=exc.code, error=exc.message)
        status, body = error_document(exc, request.scope)
        return JSONResponse(body, status_code=status, headers=retry_after(exc))

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # registered for RequestValidationError only
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = f"{where}: {first.get('msg', 'invalid request')}"
        if is_oip(request.scope):
            return JSONResponse({"error": message}, status_code=422)
        return JSONResponse(error_body("invalid_request", message, request_id_of(request)), status_code=422)

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # registered for HTTPException only
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if is_oip(request.scope):
            message = f"{exc.detail}: {request.method} {route_path(request.scope)}"
            return JSONResponse({"error": message}, status_code=exc.status_code, headers=headers)
        body = error_body(code, str(exc.detail), request_id_of(request))
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    app.add_exception_handler(CatdogError, on_catdog_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)


async def refuse(scope: Scope, send: Send, data_plane: DataPlane, model: str, exc: Overloaded, *, close: bool) -> None:
    """The admission door's answer, in raw ASGI (a refusal under a crowd must cost next to nothing): the same
    body, status, Retry-After and count as the handlers give, plus `Connection: close` when the client is
    waiting on `100-continue` (it will never send the body the server would otherwise have to drop)."""
    notes(scope).update(model=model, error=exc.code)
    data_plane.rejected(model, exc)
    status, document = error_document(exc, scope)
    body = json.dumps(document).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(exc.retry_after_s or 1).encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
