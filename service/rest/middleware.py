"""HTTP plumbing shared by every route: request ids, the access log line, the security headers and the HTTP
metrics (the error path is service/rest/errors.py)."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable
from typing import Any

import structlog
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.access import log_access, request_id
from service.errors import error_body
from service.lifecycle import Lifecycle
from service.rest.errors import is_oip
from service.rest.requests import header, route_path
from service.rest.security import COMMON_HEADERS, NO_STORE, default_policy, docs_policy
from service.settings import Settings

log = structlog.get_logger(__name__)


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
        # A sampled request's trace as the exemplar (service/rest/observe.py puts it in the scope's state).
        self.duration.labels(handler, method).observe(seconds, scope.get("state", {}).get("exemplar"))

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
    small Swagger UI page (its CSP hashes its script). Built from the DataPlane's settings and lifecycle (the
    app factory passes them; without them it serves no docs page and never drains)."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings | None = None,
        lifecycle: Lifecycle | None = None,
        http_metrics: HttpMetrics | None = None,
    ) -> None:
        self.app = app
        self.lifecycle = lifecycle or Lifecycle()
        self.http_metrics = http_metrics
        self.docs_url = settings.docs_path.rstrip("/") if settings is not None and settings.docs_enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(header(scope, b"x-request-id"))
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        access: dict[str, Any] = {}
        state["access"] = access
        lifecycle, docs_url = self.lifecycle, self.docs_url
        is_docs = bool(docs_url) and route_path(scope) in (docs_url, f"{docs_url}/oauth2-redirect")
        status = 500
        response_started = False
        held: Message | None = None  # the docs page's start message, sent once its body is known
        held_body: list[bytes] = []

        def finish(message: Message, csp: str | None) -> Message:
            message["headers"] = _response_headers(list(message.get("headers", [])), rid, csp, lifecycle.draining)
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
            log.exception("unhandled_error", request_id=rid, method=scope["method"], path=scope["path"])
            if response_started:
                raise
            body: dict[str, Any] = error_body("internal_error", _INTERNAL_MESSAGE, rid)
            if is_oip(scope):  # the Open Inference Protocol's shape under /v2 (service/rest/errors.py)
                body = {"error": f"{_INTERNAL_MESSAGE} ({rid})"}
            await JSONResponse(body, status_code=500)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            if self.http_metrics is not None:
                self.http_metrics.observe(scope, status, elapsed)
            client = (scope.get("client") or ("", 0))[0]
            log_access(rid, scope["method"], scope["path"], status, elapsed, client, state.get("access", access))


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
