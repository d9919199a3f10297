"""What every transport does the same around a request: the request-id rule and the one access line.

Protocol-free, so the REST middleware and the gRPC servicer write the same id and the same line."""

from __future__ import annotations

import re
import uuid
from typing import Any

import structlog

access_log = structlog.get_logger("catdog.access")

_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id(*offered: object) -> str:
    """The first offered id that is sane (1 to 128 of letters, digits and `._:-`), else a new one."""
    for candidate in offered:
        if isinstance(candidate, str) and _VALID_REQUEST_ID.fullmatch(candidate):
            return candidate
    return uuid.uuid4().hex


def log_access(
    request_id: str, method: str, path: str, status: int | str, seconds: float, client: str, fields: dict[str, Any]
) -> None:
    """One line per request (HTTP or gRPC): what was asked, how it ended, and what the adapter noted."""
    access_log.info(
        "request",
        request_id=request_id,
        method=method,
        path=path,
        status=status,
        duration_ms=round(seconds * 1000, 3),
        client=client,
        **fields,
    )
