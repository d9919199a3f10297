"""W3C Trace Context and Baggage read from ASGI headers and gRPC metadata alike."""

from __future__ import annotations

from opentelemetry import baggage, trace

from service.tracing.propagation import carrier, extract, inject

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def test_asgi_headers_and_grpc_metadata_give_the_same_parent() -> None:
    asgi = [(b"host", b"x"), (b"traceparent", PARENT.encode()), (b"tracestate", b"a=1"), (b"TraceState", b"b=2")]
    grpc_metadata = (("user-agent", "grpc"), ("traceparent", PARENT), ("tracestate", "a=1,b=2"), ("x-bin", b"\x00"))
    for headers in (asgi, grpc_metadata):
        parent = trace.get_current_span(extract(headers)).get_span_context()
        assert trace.format_trace_id(parent.trace_id) == TRACE_ID
        assert trace.format_span_id(parent.span_id) == "00f067aa0ba902b7"
        assert parent.is_remote and parent.trace_flags.sampled
        assert parent.trace_state.to_header() == "a=1,b=2"


def test_only_propagation_headers_are_kept_and_repeats_are_joined() -> None:
    found = carrier(
        [(b"Traceparent", PARENT.encode()), (b"cookie", b"secret"), (b"baggage", b"a=1"), ("baggage", "b=2")]
    )
    assert found == {"traceparent": PARENT, "baggage": "a=1,b=2"}


def test_baggage_is_extracted() -> None:
    context = extract([("traceparent", PARENT), ("baggage", "tenant=acme,session=42")])
    assert baggage.get_all(context) == {"tenant": "acme", "session": "42"}


def test_garbage_or_nothing_means_a_new_trace() -> None:
    for headers in ([], [(b"traceparent", b"00-zzzz-00f067aa0ba902b7-01")], [("traceparent", "ff-" + PARENT[3:])]):
        assert not trace.get_current_span(extract(headers)).get_span_context().is_valid


def test_inject_round_trips() -> None:
    context = extract([("traceparent", PARENT), ("baggage", "k=v")])
    headers = inject(context)
    assert headers["traceparent"] == PARENT
    assert headers["baggage"] == "k=v"
