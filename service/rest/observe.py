"""The REST side of service/observation.py: pure ASGI, inside RequestContextMiddleware (which has assigned the
request id and writes the access line) and outside the admission door (so a refusal there is traced too).

Probes and /metrics are not observed. The server span is named by the route template once routing has run
(`POST /v2/models/{name}/infer`); the access line gets `trace_id` and `span_id`; the request duration histogram
(observed by RequestContextMiddleware) gets the sampled request's exemplar through the scope's state.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.observation import RequestObserver
from service.rest.requests import header, route_path

EXEMPLAR_KEY = "exemplar"
# A model's readiness (/v2/models/{name}[/versions/{v}]/ready) is a probe too.
_MODEL_READY = re.compile(r"^/v2/models/[^/]+(?:/versions/[^/]+)?/ready$")


class ObservationMiddleware:
    def __init__(self, app: ASGIApp, observer: RequestObserver, excluded: Iterable[str]) -> None:
        self.app = app
        self.observer = observer
        self.excluded = frozenset(excluded)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path in self.excluded or _MODEL_READY.match(path):
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        state = scope.setdefault("state", {})
        request_id = str(state.get("request_id", ""))
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": scope["path"],
            "catdog.request_id": request_id,
        }
        length = header(scope, b"content-length")
        if length is not None and length.isdigit():
            attributes["http.request.body.size"] = int(length)
        observation = self.observer.start(method, scope["headers"], attributes, request_id)
        state.setdefault("access", {}).update(observation.log_fields)
        state[EXEMPLAR_KEY] = observation.exemplar
        status = 500
        sent = 0

        async def send_observed(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        except Exception as exc:
            observation.fail(exc)
            raise
        finally:
            route = getattr(scope.get("route"), "path", None) or _template(
                scope.get("app"), scope["path"], scope.get("root_path", ""), method
            )
            access = state.get("access", {})
            done: dict[str, Any] = {"http.response.status_code": status, "http.response.body.size": sent}
            if route:
                done["http.route"] = route
            if access.get("model"):
                done["catdog.model"] = str(access["model"])
            error = access.get("error")
            observation.finish(
                done,
                str(error) if error else None,
                fault=status >= 500,
                name=f"{method} {route}" if route else None,
            )


@functools.lru_cache(maxsize=1024)
def _template(app: Any, path: str, root_path: str, method: str) -> str | None:
    """The route template of a request refused before routing ran (by the admission door), as routing would
    have matched it; cached (routes never change once serving; unknown paths map to None)."""
    if app is None:
        return None
    scope = {"type": "http", "app": app, "path": path, "root_path": root_path, "method": method, "headers": []}
    return get_route_name(HTTPConnection(scope), should_include_root_path=False)
