"""W3C Trace Context and Baggage from any header list: ASGI's (bytes, bytes) pairs and gRPC's (str, str) metadata
alike, so both transports hand over what they received and get the caller's context back."""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATED = frozenset({"traceparent", "tracestate", "baggage"})
_PROPAGATOR = CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])

Headers = Iterable[tuple[str | bytes, str | bytes]]


def carrier(headers: Headers) -> dict[str, str]:
    """The propagation headers only, names lower-cased; repeated ones joined with commas (RFC 9110), which is how
    W3C Trace Context reads a tracestate split over several lines. Binary values (gRPC `-bin` keys) are skipped."""
    found: dict[str, str] = {}
    for raw_key, raw_value in headers:
        key = (raw_key.decode("latin-1") if isinstance(raw_key, bytes) else raw_key).lower()
        if key not in PROPAGATED:
            continue
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        found[key] = f"{found[key]},{value}" if key in found else value
    return found


def extract(headers: Headers) -> Context:
    """The caller's span context and baggage (an empty context when the headers carry none, or carry garbage)."""
    return _PROPAGATOR.extract(carrier(headers))


def inject(context: Context) -> dict[str, str]:
    """Headers that carry `context` onward (tests and clients use it to play the caller)."""
    headers: dict[str, str] = {}
    _PROPAGATOR.inject(headers, context=context)
    return headers
