"""What the REST adapters read from a request the same way: its path under the app, a header from the ASGI
scope, the client's timeout header, the body size admission reserves, the request id and the access notes."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import Scope

from service.errors import MalformedRequest


def route_path(scope: Scope) -> str:
    """The request's path inside the app (the ingress prefix, `root_path`, taken off)."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    return path[len(root) :] or "/" if root and path.startswith(root) else path


def header(scope: Scope, name: bytes) -> str | None:
    """A request header (lower-case `name`) straight from the ASGI scope, before any Request is built."""
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def parse_timeout(value: str | None) -> float | None:
    """A client's timeout header in seconds (`X-Request-Timeout: 2.5`); absent -> None; nonsense -> 400."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise MalformedRequest(f"X-Request-Timeout must be a positive number of seconds, not {value[:40]!r}")
    return seconds


def declared_body_bytes(content_length: bytes | str | None, limit: int) -> int:
    """What an admitted request's body will hold in memory, for admission's byte budget: its Content-Length capped
    by the upload limit (a longer body gets 413 as it is read), or the limit when it declares none (chunked)."""
    value = content_length.decode("latin-1") if isinstance(content_length, bytes) else content_length
    return min(int(value), limit) if value is not None and value.isdigit() else limit


def request_id_of(request: HTTPConnection) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def note(request: HTTPConnection, **fields: Any) -> None:
    """Add fields to this request's access log line (model, label, image size...)."""
    request.scope.setdefault("state", {}).setdefault("access", {}).update(fields)


def notes(scope: Scope) -> dict[str, Any]:
    """This request's access fields so far (the door and the error path read the model from them)."""
    access: dict[str, Any] = scope.setdefault("state", {}).setdefault("access", {})
    return access
