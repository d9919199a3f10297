"""The REST door of access control (service/security/authorizer.py): pure ASGI, in front of admission and
routing, so a refused call costs no permit, no routing and no body read (the body is never received; a client
that asked `Expect: 100-continue` is told `Connection: close` and never sends it).

Which scope a path needs (everything not listed open needs `infer`, so a new route is never open by accident):
- open: the probes (`/livez`, `/readyz`, `/v2/health/live`, `/v2/health/ready`), the page's HTML and assets (`/`,
  `/static/*`; the page's calls carry the key), Swagger UI and `/openapi.json` (descriptions, no data);
- `metrics`: the metrics path; `admin`: what changes the server (`/v2/repository/...`, `/v2/trace/...`,
  `/v2/logging`, `/v2/*sharedmemory/.../register|unregister`);
- `infer`: the rest: classify (`/predict/*`, `/v1/models/*/predict`, `/v2/models/*/infer`), model metadata
  (`/v1/models`, `/v2`, `/v2/models/...`), `/version`.

A refusal answers 401 (no key or an unknown one) with `WWW-Authenticate: Bearer`, or 403 (the key lacks the
scope), in the route's own error shape: `{"error": "..."}` under /v2, catdog's body elsewhere. The access line
carries the key's name (`key`), never the key.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import error_body
from service.rest.errors import is_oip
from service.rest.requests import notes, route_path
from service.security.authorizer import Authorizer, Decision, Outcome, credential_from
from service.security.keys import Scope as AccessScope

TRANSPORT = "rest"
PROBES = frozenset({"/livez", "/readyz", "/v2/health/live", "/v2/health/ready"})
PAGE = frozenset({"/", "/openapi.json"})
# What changes the server: Triton's repository API, trace and log settings (shared-memory register and unregister
# by their last segment).
ADMIN_PREFIXES = ("/v2/repository", "/v2/trace", "/v2/logging")


class PathScopes:
    """Path -> the scope it needs (None: open)."""

    def __init__(self, metrics_path: str, docs_path: str | None) -> None:
        self.metrics_path = metrics_path
        self.docs = docs_path.rstrip("/") if docs_path else None

    def __call__(self, path: str) -> AccessScope | None:
        if path in PROBES or path in PAGE or path.startswith("/static/"):
            return None
        if self.docs and (path == self.docs or path.startswith(self.docs + "/")):
            return None
        if path == self.metrics_path:
            return AccessScope.METRICS
        if path.startswith(ADMIN_PREFIXES) or (path.endswith(("/register", "/unregister")) and path.startswith("/v2/")):
            return AccessScope.ADMIN
        return AccessScope.INFER


class AccessMiddleware:
    def __init__(self, app: ASGIApp, authorizer: Authorizer, scopes: PathScopes) -> None:
        self.app = app
        self.authorizer = authorizer
        self.scopes = scopes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        needed = self.scopes(path)
        if needed is None:
            await self.app(scope, receive, send)
            return
        authorization = api_key = expect = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-api-key":
                api_key = value.decode("latin-1")
            elif name == b"expect":
                expect = value
        decision = self.authorizer.check(credential_from(authorization, api_key), needed)
        if decision.key_name:
            notes(scope)["key"] = decision.key_name  # the access line names the key, never shows it
        if decision.allowed:
            await self.app(scope, receive, send)
            return
        self.authorizer.count(TRANSPORT, decision)
        close = expect is not None and expect.lower() == b"100-continue"
        await _refuse(scope, send, decision, needed, oip=is_oip(scope) or path == "/v2", close=close)


async def _refuse(scope: Scope, send: Send, decision: Decision, needed: AccessScope, *, oip: bool, close: bool) -> None:
    unauthenticated = decision.outcome is Outcome.UNAUTHENTICATED
    code = "unauthenticated" if unauthenticated else "forbidden"
    notes(scope)["error"] = code
    request_id = str(scope.get("state", {}).get("request_id", ""))
    document: Any = {"error": decision.message} if oip else error_body(code, decision.message, request_id)
    body = json.dumps(document).encode()
    # RFC 6750: a challenge on 401, and on 403 which scope was missing.
    if unauthenticated:
        challenge = 'Bearer realm="catdog"' + (', error="invalid_token"' if decision.reason == "unknown_key" else "")
    else:
        challenge = f'Bearer realm="catdog", error="insufficient_scope", scope="{needed.value}"'
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", challenge.encode()),
    ]
    if close:
        headers.append((b"connection", b"close"))
    status = 401 if unauthenticated else 403
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
