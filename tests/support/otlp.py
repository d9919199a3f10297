"""A real OTLP trace receiver on loopback, for tests: opentelemetry-proto's collector TraceService over gRPC and
its HTTP binding (POST /v1/traces, an ExportTraceServiceRequest in protobuf), both decoding what the service's
OTLP exporters send into plain `Span` records."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as collector
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as collector_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from loadtest.ports import free_port


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 2 SERVER, 1 INTERNAL
    attributes: dict[str, Any]
    links: list[tuple[str, str]]
    status_code: int  # 0 unset, 1 ok, 2 error
    status_message: str
    events: list[str]
    start_ns: int
    end_ns: int
    resource: dict[str, Any]
    via: str  # "grpc" or "http"


@dataclass
class OtlpReceiver:
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    spans: list[Span] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=lambda: {"grpc": 0, "http": 0})
    keep: bool = True  # False: count exports only (benchmarks: spans by the hundred thousand)
    received: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def env(self, protocol: str) -> dict[str, str]:
        """Environment for a service exporting here over `protocol` (grpc | http/protobuf), quickly."""
        endpoint = self.grpc_endpoint if protocol == "grpc" else self.http_endpoint
        return {
            "CATDOG_TRACING": "true",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }

    def accept(self, request: collector.ExportTraceServiceRequest, via: str) -> None:
        if not self.keep:
            count = sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            with self._lock:
                self.received += count
                self.requests[via] += 1
            return
        found = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    found.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent_span_id=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                            status_code=s.status.code,
                            status_message=s.status.message,
                            events=[e.name for e in s.events],
                            start_ns=s.start_time_unix_nano,
                            end_ns=s.end_time_unix_nano,
                            resource=resource,
                            via=via,
                        )
                    )
        with self._lock:
            self.spans.extend(found)
            self.received += len(found)
            self.requests[via] += 1

    def wait_for(self, predicate: Callable[[list[Span]], bool], timeout: float = 30.0) -> list[Span]:
        """Every span received, once `predicate` holds for them (polls; raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                names = sorted({s.name for s in spans})
                raise TimeoutError(f"spans never matched within {timeout}s; got {len(spans)}: {names}")
            time.sleep(0.05)

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def clear(self) -> None:
        with self._lock:
            self.spans.clear()


class _TraceService(collector_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: Any) -> Any:
        self.receiver.accept(request, "grpc")
        return collector.ExportTraceServiceResponse()


def _http_handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                self.send_response(404)
                self.end_headers()
                return
            request = collector.ExportTraceServiceRequest()
            request.ParseFromString(body)
            receiver.accept(request, "http")
            answer = collector.ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def running_receiver(*, keep: bool = True) -> Iterator[OtlpReceiver]:
    """A receiver serving both bindings until the generator is closed (wrap in a fixture)."""
    receiver = OtlpReceiver(keep=keep)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    collector_grpc.add_TraceServiceServicer_to_server(_TraceService(receiver), server)  # type: ignore[no-untyped-call]
    server.add_insecure_port(f"127.0.0.1:{receiver.grpc_port}")
    server.start()
    http = ThreadingHTTPServer(("127.0.0.1", receiver.http_port), _http_handler(receiver))
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        http.shutdown()
        http.server_close()
        server.stop(0)


def main() -> None:
    """`python -m tests.support.otlp`: a counting receiver in a process of its own (benchmarks), printing
    `grpc_port http_port` once listening and serving until stdin closes; then prints the spans received."""
    import sys

    receiver_gen = running_receiver(keep=False)
    receiver = next(receiver_gen)
    print(receiver.grpc_port, receiver.http_port, flush=True)
    sys.stdin.read()
    print(receiver.received, flush=True)
    receiver_gen.close()


if __name__ == "__main__":
    main()
