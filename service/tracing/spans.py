"""One request's recording server span and its stage spans; the batch span linked to every request it served.

Stages measured elsewhere (on the decode pool, on the inference thread) are recorded after the fact from their
`time.perf_counter()` readings, so no thread needs the request's context and no span is open across a hand-off.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import trace as otel
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from service.errors import CatdogError

Attributes = Mapping[str, str | int | float | bool]


def record_error(span: Span, exc: BaseException) -> None:
    """The taxonomy's code on the span (`error.type`, `catdog.error.code`); a fault's traceback as an event."""
    if isinstance(exc, CatdogError):
        span.set_attributes({"error.type": exc.code, "catdog.error.code": exc.code})
        span.set_status(Status(StatusCode.ERROR, exc.message))
        if exc.status >= 500 and exc.reason not in ("overloaded", "timeout", "draining", "not_ready"):
            span.record_exception(exc)
        return
    span.set_attributes({"error.type": type(exc).__qualname__})
    span.set_status(Status(StatusCode.ERROR, str(exc)[:300]))
    span.record_exception(exc)


class RequestTrace:
    """A request's server span. `recording` is False for an unsampled request: its ids still go to the access
    line, but the transports then leave it out of `context.current()`, so no stage span is made for it."""

    __slots__ = ("_offset_ns", "parent", "recording", "span", "span_context", "span_id", "trace_id", "tracer")

    def __init__(self, tracer: Tracer, span: Span, offset_ns: int) -> None:
        self.tracer = tracer
        self.span = span
        self.span_context = span.get_span_context()
        self.recording = span.is_recording()
        self.trace_id = otel.format_trace_id(self.span_context.trace_id)
        self.span_id = otel.format_span_id(self.span_context.span_id)
        self.parent = otel.set_span_in_context(span)
        self._offset_ns = offset_ns

    @property
    def exemplar(self) -> dict[str, str] | None:
        """OpenMetrics exemplar labels for a latency observation of this request (sampled requests only)."""
        return {"trace_id": self.trace_id, "span_id": self.span_id} if self.recording else None

    def ns(self, perf_s: float) -> int:
        """A `time.perf_counter()` reading as the epoch nanoseconds spans are stamped with."""
        return int(perf_s * 1e9) + self._offset_ns

    def set(self, attributes: Attributes) -> None:
        self.span.set_attributes(attributes)

    def fail(self, exc: BaseException) -> None:
        record_error(self.span, exc)

    @contextlib.contextmanager
    def stage(self, name: str, attributes: Attributes | None = None) -> Iterator[Span]:
        span = self.tracer.start_span(name, context=self.parent, attributes=attributes)
        try:
            yield span
        except BaseException as exc:
            record_error(span, exc)
            raise
        finally:
            span.end()

    def record(
        self,
        name: str,
        start_s: float,
        end_s: float,
        attributes: Attributes | None = None,
        *,
        links: Sequence[Link] = (),
        error: BaseException | None = None,
    ) -> Span:
        """A finished child span from perf_counter readings."""
        span = self.tracer.start_span(
            name, context=self.parent, attributes=attributes, links=links, start_time=self.ns(start_s)
        )
        if error is not None:
            record_error(span, error)
        span.end(end_time=self.ns(end_s))
        return span

    def batch(
        self,
        model: str,
        served: Sequence[tuple[RequestTrace, float]],
        size: int,
        began_s: float,
        started_s: float,
        finished_s: float,
        error: BaseException | None = None,
    ) -> None:
        """One run of the model: a `catdog.batch` span (a child of this, the first traced request's span) linked
        to the span of every traced request it served, and in each of those requests its own `catdog.queue`
        (enqueued -> its batch began) and `catdog.inference` span, the latter linked back to the batch.
        `served`: (trace, enqueued_at) of each traced request, this one first."""
        attributes: dict[str, Any] = {"catdog.model": model, "catdog.batch.size": size}
        links = [Link(trace.span_context) for trace, _ in served]
        batch = self.tracer.start_span(
            "catdog.batch",
            context=self.parent,
            kind=SpanKind.INTERNAL,
            attributes={**attributes, "catdog.batch.traced": len(served)},
            links=links,
            start_time=self.ns(started_s),
        )
        if error is not None:
            record_error(batch, error)
        batch.end(end_time=self.ns(finished_s))
        to_batch = [Link(batch.get_span_context())]
        for trace, enqueued_at in served:
            trace.record("catdog.queue", enqueued_at, began_s, {"catdog.model": model})
            trace.record("catdog.inference", started_s, finished_s, attributes, links=to_batch, error=error)

    def finish(self, attributes: Attributes, error_code: str | None = None, *, fault: bool = False) -> None:
        """End the server span with what the transport answered; ERROR status only for the server's faults (5xx,
        gRPC INTERNAL...), a client's error only as `error.type` (OpenTelemetry's semantic conventions)."""
        span = self.span
        if self.recording:
            span.set_attributes(attributes)
            if error_code is not None:
                span.set_attributes({"error.type": error_code, "catdog.error.code": error_code})
            if fault:
                span.set_status(Status(StatusCode.ERROR, error_code or "error"))
        span.end()
