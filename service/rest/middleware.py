"""HTTP plumbing shared by every route: request ids, the access log line, the HTTP metrics, and the one JSON
error body."""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import CatdogError, error_body
from service.observability import ServiceMetrics
from service.rest.security import COMMON_HEADERS, NO_STORE, default_policy, docs_policy

access_log = structlog.get_logger("catdog.access")
log = structlog.get_logger(__name__)

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def note(request: Request, **fields: Any) -> None:
    """Add fields to this request's access log line (model, label, image size...)."""
    request.scope.setdefault("state", {}).setdefault("access", {}).update(fields)


class HttpMetrics:
    """`http_requests_total{handler,method,status}` and `http_request_duration_seconds{handler,method}`: the
    series prometheus-fastapi-instrumentator exported (same names, help, labels and values: the route template
    as `handler`, "none" for paths no route matches, excluded handlers by regex search), observed here in the
    one middleware instead of in a middleware layer of their own (which also walked every route per request)."""

    def __init__(self, registry: CollectorRegistry, buckets: Iterable[float], excluded: Iterable[str]) -> None:
        self.requests = Counter(
            "http_requests_total",
            "Total number of requests by method, status and handler.",
            ["handler", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Duration of HTTP requests in seconds",
            ["handler", "method"],
            buckets=[*buckets, float("inf")],
            registry=registry,
        )
        self.excluded = [re.compile(pattern) for pattern in excluded]
        self._handler = functools.lru_cache(maxsize=4096)(self._resolve)

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        method = scope["method"]
        handler = self._handler(scope.get("app"), scope["path"], scope.get("root_path", ""), method)
        if handler is None:
            return
        self.requests.labels(handler, method, str(status)).inc()
        self.duration.labels(handler, method).observe(seconds)

    def _resolve(self, app: Any, path: str, root_path: str, method: str) -> str | None:
        """The handler label of a request (None: excluded). Routes never change once serving, so the answer for
        a (path, method) is cached; paths no route matches all map to "none" (a bounded LRU holds them)."""
        scope = {"type": "http", "app": app, "path": path, "root_path": root_path, "method": method, "headers": []}
        name = get_route_name(HTTPConnection(scope), should_include_root_path=False)
        if any(pattern.search(name or path) for pattern in self.excluded):
            return None
        return name or "none"


class RequestContextMiddleware:
    """Assigns the request id (the client's X-Request-ID when sane, else a new one), echoes it, adds the security
    headers (service/rest/security.py), asks clients to reconnect elsewhere while draining (`Connection: close`),
    turns any unhandled exception into the JSON error body, counts and times the request (HttpMetrics), and
    writes one access line per request. Pure ASGI: no per-request task, and no body buffering except for the
    small Swagger UI page (its CSP hashes its script). What it needs from the app (settings, lifecycle) is read
    once, on the first request, from `app.state` unless given."""

    def __init__(self, app: ASGIApp, http_metrics: HttpMetrics | None = None) -> None:
        self.app = app
        self.http_metrics = http_metrics
        self._context: tuple[Any, str | None] | None = None

    def _app_context(self, scope: Scope) -> tuple[Any, str | None]:
        """(lifecycle, docs path or None) from the app's state; cached once the app has its settings."""
        if self._context is not None:
            return self._context
        state = getattr(scope.get("app"), "state", None)
        lifecycle = getattr(state, "lifecycle", None)
        settings = getattr(state, "settings", None)
        docs_url = settings.docs_path.rstrip("/") if settings is not None and settings.docs_enabled else None
        if settings is not None:
            self._context = (lifecycle, docs_url)
        return lifecycle, docs_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        offered = _header(scope, b"x-request-id")
        request_id = offered if offered and _VALID_REQUEST_ID.match(offered) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        access: dict[str, Any] = {}
        state["access"] = access
        lifecycle, docs_url = self._app_context(scope)
        is_docs = bool(docs_url) and _route_path(scope) in (docs_url, f"{docs_url}/oauth2-redirect")
        status = 500
        response_started = False
        held: Message | None = None  # the docs page's start message, sent once its body is known
        held_body: list[bytes] = []

        def finish(message: Message, csp: str | None) -> Message:
            draining = bool(getattr(lifecycle, "draining", False))
            message["headers"] = _response_headers(list(message.get("headers", [])), request_id, csp, draining)
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started, held
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                if is_docs:
                    held = message
                    return
                await send(finish(message, None))
                return
            if held is not None and message["type"] == "http.response.body":
                held_body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = b"".join(held_body)
                start, held = held, None
                await send(finish(start, docs_policy(body)))
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled_error", request_id=request_id, method=scope["method"], path=scope["path"])
            if response_started:
                raise
            body = error_body("internal_error", _INTERNAL_MESSAGE, request_id)
            await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            if self.http_metrics is not None:
                self.http_metrics.observe(scope, status, elapsed)
            access_log.info(
                "request",
                request_id=request_id,
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round(elapsed * 1000, 3),
                client=(scope.get("client") or ("", 0))[0],
                **state.get("access", access),
            )


_INTERNAL_MESSAGE = "internal error; see the service log for this request id"


def _response_headers(
    headers: list[tuple[bytes, bytes]], request_id: str, csp: str | None, draining: bool
) -> list[tuple[bytes, bytes]]:
    """The route's headers plus the request id and every security header the route did not set itself."""
    present = {name.lower() for name, _ in headers}
    content_type = next((value for name, value in headers if name.lower() == b"content-type"), b"")
    added = [(b"x-request-id", request_id.encode())]
    added += [(name, value) for name, value in COMMON_HEADERS if name not in present]
    if b"content-security-policy" not in present:
        added.append((b"content-security-policy", (csp or default_policy(content_type)).encode()))
    if b"cache-control" not in present:
        added.append(NO_STORE)
    if draining:
        headers = [(name, value) for name, value in headers if name.lower() != b"connection"]
        added.append((b"connection", b"close"))
    return [*headers, *added]


def _route_path(scope: Scope) -> str:
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message, request_id_of(request)), status_code=status, headers=headers)


def register_error_handlers(app: FastAPI, metrics: ServiceMetrics) -> None:
    """Every failure leaves as {"error": {code, message, request_id}}; no traceback or path ever does. Unhandled
    exceptions are answered by RequestContextMiddleware, which sits inside Starlette's ServerErrorMiddleware
    (where an `Exception` handler would run) and so sees them first."""

    async def on_catdog_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, CatdogError)
        model = request.scope.get("state", {}).get("access", {}).get("model", "-")
        if exc.reason:
            metrics.rejected.labels(model, exc.reason).inc()
        note(request, error=exc.code)
        if exc.status == 500:  # a fault, not back-pressure or a deadline: say which request failed
            log.error("request_failed", request_id=request_id_of(request), code=exc.code, error=exc.message)
        headers = {"Retry-After": str(exc.retry_after_s)} if exc.retry_after_s else None
        return error_response(request, exc.status, exc.code, exc.message, headers)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(request, 422, "invalid_request", f"{where}: {first.get('msg', 'invalid request')}")

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail), dict(exc.headers or {}))

    app.add_exception_handler(CatdogError, on_catdog_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
