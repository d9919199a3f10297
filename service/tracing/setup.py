"""The OpenTelemetry SDK from the standard environment variables, built only when CATDOG_TRACING is on.

- OTEL_EXPORTER_OTLP_ENDPOINT (and the _TRACES_ variants): where spans go; the exporters read it themselves.
- OTEL_EXPORTER_OTLP_PROTOCOL (or OTEL_EXPORTER_OTLP_TRACES_PROTOCOL): `grpc` or `http/protobuf` (the
  specification's default).
- OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES: the resource (service.name defaults to "catdog").
- OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG: read by the SDK's TracerProvider (default parentbased_always_on:
  a caller's sampling decision is kept).
- OTEL_BSP_*: the batch span processor's queue and delays (spans leave in a thread of their own).

The provider is the app's own, not the process-global one: nothing here happens at import time, and a test
process may build several apps.
"""

from __future__ import annotations

import os
import threading
import time

from opentelemetry import baggage
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind

from service.tracing.propagation import Headers, extract
from service.tracing.spans import Attributes, RequestTrace

PROTOCOLS = ("grpc", "http/protobuf")
TRACER_NAME = "catdog"


def otlp_protocol(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or PROTOCOLS[1]
    if protocol not in PROTOCOLS:
        raise ValueError(f"OTEL_EXPORTER_OTLP_PROTOCOL must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    return protocol


def exporter(protocol: str) -> SpanExporter:
    """The OTLP span exporter for `protocol`; its endpoint, headers, TLS and timeout come from OTEL_EXPORTER_OTLP_*."""
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter()


def resource(service_version: str) -> Resource:
    """OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME as the SDK reads them, over catdog's defaults (service.name
    "catdog" where neither names the service, service.version the package's)."""
    found = Resource.create()
    if str(found.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        found = found.merge(Resource({SERVICE_NAME: TRACER_NAME}))
    return Resource({SERVICE_VERSION: service_version}).merge(found)


class Tracing:
    """The app's tracer: server spans for the transports (their stage spans hang off the RequestTrace)."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(TRACER_NAME)
        # perf_counter readings -> epoch nanoseconds, for stages recorded after the fact (spans.RequestTrace.ns).
        self._offset_ns = time.time_ns() - time.perf_counter_ns()

    @classmethod
    def from_environment(cls, service_version: str, span_exporter: SpanExporter | None = None) -> Tracing:
        provider = TracerProvider(resource=resource(service_version))  # the sampler from OTEL_TRACES_SAMPLER*
        provider.add_span_processor(BatchSpanProcessor(span_exporter or exporter(otlp_protocol())))
        return cls(provider)

    def server_span(self, name: str, headers: Headers, attributes: Attributes) -> RequestTrace:
        """Start a request's server span, a child of the caller's (traceparent) when there is one."""
        context = extract(headers)
        entries = baggage.get_all(context)
        if entries:  # the caller's baggage, searchable on the span (W3C Baggage)
            attributes = {**attributes, **{f"baggage.{key}": str(value) for key, value in entries.items()}}
        span = self.tracer.start_span(name, context=context, kind=SpanKind.SERVER, attributes=attributes)
        return RequestTrace(self.tracer, span, self._offset_ns)

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Export what is still queued and stop, waiting at most `timeout_s`: a dead collector (the exporter
        retries for up to OTEL_EXPORTER_OTLP_TIMEOUT) must not hold up the process's exit."""
        worker = threading.Thread(target=self.provider.shutdown, name="otel-shutdown", daemon=True)
        worker.start()
        worker.join(timeout_s)
