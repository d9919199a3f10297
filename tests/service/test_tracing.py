"""Traces of the real service, received by a real OTLP receiver (tests/support/otlp.py) over gRPC and HTTP: the
caller's trace continued from real clients (httpx with OpenTelemetry's propagator, tritonclient's HTTP and gRPC
clients with the header / metadata), every stage span with its attributes, one batch span linked to every
request it served, error spans with the taxonomy's codes, none for probes, and the ids on the access line."""

from __future__ import annotations

import concurrent.futures
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from tests.support.images import RED, encode, solid
from tests.support.otlp import OtlpReceiver, Span, running_receiver
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.slow

SERVER, INTERNAL = 2, 1
ERROR = 2


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    yield from running_receiver()


@pytest.fixture(scope="module")
def batching(receiver: OtlpReceiver, tiny_repository: Path) -> Iterator[ServiceProcess]:
    """Exporting over OTLP/gRPC, batching on (up to 4 images, 200 ms to fill)."""
    env = {
        **receiver.env("grpc"),
        "CATDOG_MODEL_DIR": str(tiny_repository),
        "CATDOG_BATCH_MAX_SIZE": "4",
        "CATDOG_BATCH_MAX_WAIT_MS": "200",
        "OTEL_SERVICE_NAME": "catdog-under-test",
    }
    with ServiceProcess(env) as service:
        yield service


@pytest.fixture(scope="module")
def narrow(receiver: OtlpReceiver, tiny_repository: Path) -> Iterator[ServiceProcess]:
    """Exporting over OTLP/HTTP, admitting one request per model at a time (for refusals)."""
    env = {
        **receiver.env("http/protobuf"),
        "CATDOG_MODEL_DIR": str(tiny_repository),
        "CATDOG_ADMISSION_MIN_LIMIT": "1",
        "CATDOG_ADMISSION_MAX_LIMIT": "1",
    }
    with ServiceProcess(env) as service:
        yield service


def caller() -> tuple[str, str, dict[str, str]]:
    """A caller's span (trace id, span id) and the W3C headers OpenTelemetry's own propagator makes for it."""
    trace_id, span_id = secrets.randbits(128), secrets.randbits(64)
    parent = SpanContext(trace_id, span_id, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    headers: dict[str, str] = {}
    inject(headers, context=trace.set_span_in_context(NonRecordingSpan(parent)))
    return trace.format_trace_id(trace_id), trace.format_span_id(span_id), headers


def jpeg() -> bytes:
    return encode(solid(RED, (64, 48)), "JPEG")


def spans_of(receiver: OtlpReceiver, trace_id: str, *names: str) -> list[Span]:
    """The trace's spans once every name in `names` has arrived."""
    receiver.wait_for(lambda spans: set(names) <= {s.name for s in spans if s.trace_id == trace_id})
    return receiver.trace(trace_id)


def one(spans: list[Span], name: str) -> Span:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, (name, [s.name for s in spans])
    return found[0]


def test_rest_request_continues_the_callers_trace_through_every_stage(
    batching: ServiceProcess, receiver: OtlpReceiver
) -> None:
    trace_id, parent_id, headers = caller()
    response = httpx.post(
        f"{batching.base_url}/predict/pretrained",
        files={"file": ("red.jpg", jpeg(), "image/jpeg")},
        headers={**headers, "baggage": "tenant=acme"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    request_id = response.headers["x-request-id"]
    stages = ("catdog.admission", "catdog.read", "catdog.decode", "catdog.queue", "catdog.inference")
    spans = spans_of(receiver, trace_id, "POST /predict/pretrained", "catdog.batch", "catdog.encode", *stages)
    server = one(spans, "POST /predict/pretrained")
    assert server.kind == SERVER and server.parent_span_id == parent_id
    assert server.attributes["http.route"] == "/predict/pretrained"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["catdog.model"] == "pretrained"
    assert server.attributes["catdog.request_id"] == request_id
    assert server.attributes["http.request.body.size"] == int(response.request.headers["content-length"])
    assert server.attributes["http.response.body.size"] == len(response.content)
    assert server.attributes["baggage.tenant"] == "acme"
    assert server.resource["service.name"] == "catdog-under-test" and server.via == "grpc"
    for name in (*stages, "catdog.encode"):
        stage = one(spans, name)
        assert stage.parent_span_id == server.span_id, name
        assert server.start_ns <= stage.start_ns <= stage.end_ns <= server.end_ns, name
    assert one(spans, "catdog.admission").attributes["catdog.admission.result"] == "admitted"
    decode = one(spans, "catdog.decode")
    assert decode.attributes["catdog.image.format"] == "JPEG"
    assert (decode.attributes["catdog.image.width"], decode.attributes["catdog.image.height"]) == (64, 48)
    assert decode.attributes["catdog.image.pixels"] == 64 * 48
    assert decode.attributes["catdog.image.bytes"] == len(jpeg())
    assert one(spans, "catdog.queue").end_ns <= one(spans, "catdog.inference").start_ns
    (line,) = batching.wait_for_log(lambda r: r.get("request_id") == request_id and r.get("event") == "request")
    assert (line["trace_id"], line["span_id"]) == (trace_id, server.span_id)


def test_tritonclient_http_and_grpc_carry_the_callers_trace(batching: ServiceProcess, receiver: OtlpReceiver) -> None:
    tensor = np.array([jpeg()], dtype=np.object_)
    rest_trace, rest_parent, headers = caller()
    with triton_http.InferenceServerClient(f"127.0.0.1:{batching.port}") as client:
        image = triton_http.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(tensor)
        assert list(client.infer("pretrained", [image], headers=headers).as_numpy("label")) == [b"cat"]
    grpc_trace, grpc_parent, metadata = caller()
    client = triton_grpc.InferenceServerClient(batching.grpc_target)
    try:
        image = triton_grpc.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(tensor)
        traced = {**metadata, "x-request-id": f"grpc-{grpc_trace[:8]}"}
        assert list(client.infer("pretrained", [image], headers=traced).as_numpy("label")) == [b"cat"]
    finally:
        client.close()

    rest = spans_of(receiver, rest_trace, "POST /v2/models/{name}/infer", "catdog.read", "catdog.inference")
    server = one(rest, "POST /v2/models/{name}/infer")
    assert server.parent_span_id == rest_parent and server.attributes["catdog.model"] == "pretrained"
    assert server.attributes["http.route"] == "/v2/models/{name}/infer"

    name = "inference.GRPCInferenceService/ModelInfer"
    rpc = spans_of(receiver, grpc_trace, name, "catdog.decode", "catdog.inference", "catdog.encode")
    server = one(rpc, name)
    assert server.kind == SERVER and server.parent_span_id == grpc_parent
    assert server.attributes["rpc.system"] == "grpc" and server.attributes["rpc.method"] == "ModelInfer"
    assert server.attributes["rpc.grpc.status_code"] == 0 and server.attributes["catdog.model"] == "pretrained"
    assert not [s for s in rpc if s.name == "catdog.read"]  # gRPC has read the message before the handler runs
    for stage in ("catdog.admission", "catdog.decode", "catdog.queue", "catdog.inference", "catdog.encode"):
        assert one(rpc, stage).parent_span_id == server.span_id
    assert server.attributes["catdog.request_id"] == f"grpc-{grpc_trace[:8]}"
    (line,) = batching.wait_for_log(lambda r: r.get("request_id") == f"grpc-{grpc_trace[:8]}")
    assert (line["method"], line["trace_id"], line["span_id"]) == ("GRPC", grpc_trace, server.span_id)


def test_a_batch_links_to_every_request_it_served(batching: ServiceProcess, receiver: OtlpReceiver) -> None:
    callers = [caller() for _ in range(4)]

    def post(headers: dict[str, str]) -> int:
        files = {"file": ("red.jpg", jpeg(), "image/jpeg")}
        return httpx.post(f"{batching.base_url}/predict/scratch", files=files, headers=headers, timeout=30).status_code

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(post, [h for _, _, h in callers])) == [200] * 4
    traces = {trace_id for trace_id, _, _ in callers}

    def complete(got: list[Span]) -> bool:
        """Every request's server and inference span and every batch they link to: the SDK exports them in
        batches, and a server span ends (and is exported) after its inference span."""
        ours = [s for s in got if s.trace_id in traces]
        inference = [s for s in ours if s.name == "catdog.inference"]
        batch_ids = {s.span_id for s in ours if s.name == "catdog.batch"}
        return (
            {s.trace_id for s in ours if s.kind == SERVER} == traces
            and len(inference) == 4
            and all(link[1] in batch_ids for s in inference for link in s.links)
        )

    spans = receiver.wait_for(complete)
    servers = {s.trace_id: s for s in spans if s.trace_id in traces and s.kind == SERVER}
    assert {s.parent_span_id for s in servers.values()} == {parent for _, parent, _ in callers}
    batches = {s.span_id: s for s in spans if s.name == "catdog.batch" and s.trace_id in traces}
    assert batches
    linked = {link for b in batches.values() for link in b.links}
    # Every request span is linked from the batch that served it...
    assert {(s.trace_id, s.span_id) for s in servers.values()} == linked
    # ... and some batch served more than one of these requests (four concurrent posts, 200 ms to fill).
    assert max(len(b.links) for b in batches.values()) >= 2
    for batch in batches.values():
        assert batch.attributes["catdog.batch.size"] >= len(batch.links)
        assert batch.trace_id == batch.links[0][0]  # it sits in the first linked request's trace
    for inference in (s for s in spans if s.trace_id in traces and s.name == "catdog.inference"):
        ((_, batch_span),) = inference.links
        assert batch_span in batches
        assert (inference.trace_id, servers[inference.trace_id].span_id) in batches[batch_span].links


def test_bad_requests_are_error_spans_with_the_taxonomy_code(batching: ServiceProcess, receiver: OtlpReceiver) -> None:
    trace_id, _, headers = caller()
    files = {"file": ("cut.jpg", jpeg()[:200], "image/jpeg")}  # a JPEG cut short: undecodable
    response = httpx.post(f"{batching.base_url}/predict/pretrained", files=files, headers=headers, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_image"
    spans = spans_of(receiver, trace_id, "POST /predict/pretrained", "catdog.decode")
    server = one(spans, "POST /predict/pretrained")
    assert server.attributes["error.type"] == "invalid_image" == server.attributes["catdog.error.code"]
    assert server.attributes["http.response.status_code"] == 400
    assert server.status_code != ERROR  # the client's error, not the server's (semantic conventions)
    decode = one(spans, "catdog.decode")
    assert decode.status_code == ERROR and decode.attributes["catdog.error.code"] == "invalid_image"

    grpc_trace, _, metadata = caller()
    client = triton_grpc.InferenceServerClient(batching.grpc_target)
    try:
        image = triton_grpc.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(np.array([jpeg()], dtype=np.object_))
        with pytest.raises(Exception, match="no model"):
            client.infer("nope", [image], headers=metadata)
    finally:
        client.close()
    server = one(
        spans_of(receiver, grpc_trace, "inference.GRPCInferenceService/ModelInfer"),
        "inference.GRPCInferenceService/ModelInfer",
    )
    assert server.attributes["error.type"] == "model_not_found"
    assert server.attributes["rpc.grpc.status_code"] == 5  # NOT_FOUND


def test_a_refusal_at_the_door_is_traced_with_its_reason(narrow: ServiceProcess, receiver: OtlpReceiver) -> None:
    # Hold the model's one admission slot with a request whose body never finishes arriving.
    holder = socket.create_connection(("127.0.0.1", narrow.port))
    try:
        head = b"POST /predict/pretrained HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 5000\r\n"
        holder.sendall(head + b"\r\nxx")
        trace_id, _, headers = caller()
        deadline_response = None
        for _ in range(100):  # until the holder is admitted (its body is being read)
            deadline_response = httpx.post(
                f"{narrow.base_url}/predict/pretrained",
                content=jpeg(),
                headers={**headers, "content-type": "image/jpeg"},
            )
            if deadline_response.status_code == 503:
                break
        assert deadline_response is not None and deadline_response.status_code == 503, deadline_response
    finally:
        holder.close()
    spans = spans_of(receiver, trace_id, "POST /predict/pretrained", "catdog.admission")
    server = next(s for s in spans if s.name == "POST /predict/pretrained" and s.attributes.get("error.type"))
    assert server.attributes["error.type"] == "overloaded" and server.status_code == ERROR
    assert server.via == "http"
    refusals = [s for s in spans if s.name == "catdog.admission" and s.parent_span_id == server.span_id]
    assert [s.attributes["catdog.admission.result"] for s in refusals] == ["refused_limit"]


def test_probes_and_metrics_are_not_traced(batching: ServiceProcess, receiver: OtlpReceiver) -> None:
    probe_trace, _, headers = caller()
    for path in ("/livez", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready", "/v2/models/pretrained/ready"):
        assert httpx.get(f"{batching.base_url}{path}", headers=headers).status_code == 200, path
    client = triton_grpc.InferenceServerClient(batching.grpc_target)
    try:
        assert client.is_server_live(headers=headers) and client.is_server_ready(headers=headers)
        assert client.is_model_ready("pretrained", headers=headers)
    finally:
        client.close()
    # A traced request afterwards: once its spans are in, the probes' would have been too.
    after, _, after_headers = caller()
    assert httpx.get(f"{batching.base_url}/v1/models", headers=after_headers).status_code == 200
    spans_of(receiver, after, "GET /v1/models")
    assert receiver.trace(probe_trace) == []
