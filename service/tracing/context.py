"""The request's trace as the data plane sees it: a context variable, None unless the request is being recorded.

The data plane never imports OpenTelemetry: it asks `current()` and, when it gets a trace, records its stages on
it. Off (the default) or unsampled, every call site costs one context-variable read and an `is None` test.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from service.tracing.spans import RequestTrace

_CURRENT: ContextVar[RequestTrace | None] = ContextVar("catdog_trace", default=None)
_NOTHING = contextlib.nullcontext()


def enter(value: RequestTrace | None) -> Token[RequestTrace | None]:
    """Make `value` current until `leave(token)` (a transport's seam: start and finish of a request)."""
    return _CURRENT.set(value)


def leave(token: Token[RequestTrace | None]) -> None:
    _CURRENT.reset(token)


def current() -> RequestTrace | None:
    """The recording trace of the request this task serves, or None."""
    return _CURRENT.get()


@contextlib.contextmanager
def serving(trace: RequestTrace | None) -> Iterator[RequestTrace | None]:
    """Make `trace` the current one for the block (the transports' server span)."""
    token = _CURRENT.set(trace)
    try:
        yield trace
    finally:
        _CURRENT.reset(token)


def stage(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current request for the block (its errors recorded), or nothing when untraced."""
    trace = _CURRENT.get()
    if trace is None:
        return _NOTHING
    return trace.stage(name, attributes)
