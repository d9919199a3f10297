"""The per-request seam both transports call (the REST middleware in service/rest/observe.py and the gRPC
servicer) when tracing or payload logging is on; with both off it is never built and costs nothing.

`start` opens the server span as a child of the caller's W3C context, makes the trace current for the data plane
(service/tracing/context.py), and starts the request's payload record (service/payloadlog/record.py), which the
data plane fills (model, version, inputs, answers or error) while it serves; `Observation.finish` ends the span
with what the transport answered and queues the record for the sink, if the request reached a model.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from service.payloadlog import record as payload_context
from service.payloadlog.record import PayloadRecord
from service.settings import Settings
from service.tracing import context as trace_context

if TYPE_CHECKING:
    from service.payloadlog.sender import PayloadLogger
    from service.tracing.propagation import Headers
    from service.tracing.setup import Tracing
    from service.tracing.spans import Attributes, RequestTrace


class Observation:
    __slots__ = ("_payloads", "_tokens", "record", "trace")

    def __init__(
        self, trace: RequestTrace | None, record: PayloadRecord | None, payloads: PayloadLogger | None
    ) -> None:
        self.trace = trace
        self.record = record
        self._payloads = payloads
        recording = trace if trace is not None and trace.recording else None
        self._tokens = (trace_context.enter(recording), payload_context.enter(record))

    @property
    def log_fields(self) -> dict[str, str]:
        """trace_id and span_id for the access line (also for unsampled requests: the caller's trace id)."""
        if self.trace is None or not self.trace.span_context.is_valid:
            return {}
        return {"trace_id": self.trace.trace_id, "span_id": self.trace.span_id}

    @property
    def exemplar(self) -> dict[str, str] | None:
        return None if self.trace is None else self.trace.exemplar

    def fail(self, exc: BaseException) -> None:
        """An exception escaped the transport's handler: recorded on the server span."""
        if self.trace is not None and self.trace.recording:
            self.trace.fail(exc)

    def finish(
        self, attributes: Attributes, error_code: str | None = None, *, fault: bool = False, name: str | None = None
    ) -> None:
        trace_token, payload_token = self._tokens
        trace_context.leave(trace_token)
        payload_context.leave(payload_token)
        if self.trace is not None:
            if name is not None and self.trace.recording:
                self.trace.span.update_name(name)
            self.trace.finish(attributes, error_code, fault=fault)
        record = self.record
        if record is not None and record.model and self._payloads is not None:
            if error_code is not None and record.error_code is None:  # failed outside the data plane's span
                record.error_code, record.status = error_code, 500 if fault else 400
            self._payloads.submit(record)


class RequestObserver:
    def __init__(self, tracing: Tracing | None, payloads: PayloadLogger | None) -> None:
        self.tracing = tracing
        self.payloads = payloads

    def start(self, name: str, headers: Headers, attributes: Attributes, request_id: str) -> Observation:
        """Call `finish` on the result in the same task (it resets the context variables set here)."""
        trace = None if self.tracing is None else self.tracing.server_span(name, headers, attributes)
        record = None
        if self.payloads is not None:
            record = self.payloads.begin(request_id)
            if record is not None and trace is not None and trace.span_context.is_valid:
                flags = "01" if trace.span_context.trace_flags.sampled else "00"
                record.traceparent = f"00-{trace.trace_id}-{trace.span_id}-{flags}"
        return Observation(trace, record, self.payloads)

    def start_sending(self) -> None:
        if self.payloads is not None:
            self.payloads.start()

    def close(self) -> None:
        if self.payloads is not None:
            self.payloads.stop()
        if self.tracing is not None:
            self.tracing.shutdown()


def from_settings(settings: Settings, registry: CollectorRegistry, service_version: str) -> RequestObserver | None:
    """The observer CATDOG_TRACING and CATDOG_PAYLOAD_LOG_URL ask for; None (nothing on the request path) when
    neither is on. The OpenTelemetry SDK is imported here, and only when tracing is on."""
    tracing = None
    if settings.tracing:
        from service.tracing.setup import Tracing

        tracing = Tracing.from_environment(service_version)
    payloads = None
    if settings.payload_log_url:
        from service.payloadlog.sender import PayloadLogger, PayloadMetrics

        payloads = PayloadLogger(
            settings.payload_log_url,
            PayloadMetrics(registry),
            mode=settings.payload_log_mode,
            sample_rate=settings.payload_log_sample_rate,
            max_bytes=settings.payload_log_max_bytes,
            source=settings.payload_log_source or f"urn:catdog:{socket.gethostname()}",
            queue_max=settings.payload_log_queue,
            queue_bytes=settings.payload_log_queue_bytes,
            timeout_s=settings.payload_log_timeout_s,
            retries=settings.payload_log_retries,
        )
    if tracing is None and payloads is None:
        return None
    return RequestObserver(tracing, payloads)
