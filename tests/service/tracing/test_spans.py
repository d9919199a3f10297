"""Server, stage and batch spans from the real SDK: parent-child under a caller's traceparent, after-the-fact
stages in order, the taxonomy's codes on errors, and one batch span linked to every request it served."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from service.dataplane.batching import MicroBatcher
from service.errors import InvalidImage, Overloaded
from service.tracing import context
from service.tracing.spans import RequestTrace
from tests.service.tracing.support import ALWAYS_OFF, by_name, in_memory

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
PARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def test_server_span_is_a_child_of_the_callers_and_stages_are_its_children() -> None:
    tracing, exported = in_memory()
    request = tracing.server_span("POST", [(b"traceparent", PARENT.encode())], {"catdog.protocol": "catdog"})
    assert request.recording and request.trace_id == TRACE_ID
    assert request.exemplar == {"trace_id": TRACE_ID, "span_id": request.span_id}
    with context.serving(request), context.stage("catdog.read", **{"catdog.model": "m"}):
        pass
    began = time.perf_counter()
    request.record("catdog.decode", began, began + 0.002, {"catdog.image.format": "JPEG"})
    request.finish({"http.response.status_code": 200})
    spans = exported.get_finished_spans()
    (server,) = by_name(spans, "POST")
    assert server.kind is SpanKind.SERVER
    assert server.parent is not None and trace.format_span_id(server.parent.span_id) == PARENT_ID
    assert server.attributes is not None and server.attributes["http.response.status_code"] == 200
    for name in ("catdog.read", "catdog.decode"):
        (stage,) = by_name(spans, name)
        assert stage.parent is not None and stage.parent.span_id == server.context.span_id
        assert stage.context.trace_id == server.context.trace_id
    (decode,) = by_name(spans, "catdog.decode")
    assert decode.end_time is not None and decode.start_time is not None
    assert 1_900_000 <= decode.end_time - decode.start_time <= 2_100_000
    assert abs(decode.start_time - time.time_ns()) < 5e9  # perf_counter readings land on the wall clock


def test_no_parent_means_a_new_trace() -> None:
    tracing, exported = in_memory()
    request = tracing.server_span("POST", [], {})
    request.finish({})
    (server,) = exported.get_finished_spans()
    assert server.parent is None and request.trace_id != TRACE_ID


def test_errors_carry_the_taxonomy_code() -> None:
    tracing, exported = in_memory()
    request = tracing.server_span("POST", [], {})
    with context.serving(request):
        try:
            with context.stage("catdog.decode"):
                raise InvalidImage("not an image")
        except InvalidImage:
            pass
    request.finish({"http.response.status_code": 400}, "invalid_image")
    refused = tracing.server_span("POST", [], {})
    refused.finish({"http.response.status_code": 503}, Overloaded.code, fault=True)
    spans = exported.get_finished_spans()
    (decode,) = by_name(spans, "catdog.decode")
    assert decode.status.status_code is StatusCode.ERROR and decode.attributes is not None
    assert decode.attributes["catdog.error.code"] == "invalid_image"
    client, fault = by_name(spans, "POST")
    assert client.attributes is not None and client.attributes["error.type"] == "invalid_image"
    assert client.status.status_code is StatusCode.UNSET  # a client's error is not the server's fault
    assert fault.status.status_code is StatusCode.ERROR
    assert fault.attributes is not None and fault.attributes["error.type"] == "overloaded"


def test_unsampled_requests_record_nothing_but_keep_their_ids() -> None:
    tracing, exported = in_memory(ALWAYS_OFF)
    request = tracing.server_span("POST", [(b"traceparent", PARENT.replace("-01", "-00").encode())], {})
    assert not request.recording and request.exemplar is None
    assert request.trace_id == TRACE_ID  # the access line still says which trace the caller had
    request.finish({})
    assert exported.get_finished_spans() == ()


def test_a_batch_is_one_span_linked_to_every_request_it_served() -> None:
    tracing, exported = in_memory()

    def run(batch: np.ndarray) -> np.ndarray:
        return np.zeros((batch.shape[0], 2), dtype=np.float32)

    async def scenario() -> list[RequestTrace]:
        batcher = MicroBatcher("m", run, max_batch_size=3, max_wait_s=1.0, queue_max=8)
        batcher.start()
        traces = [tracing.server_span("POST", [], {}) for _ in range(3)]

        async def one(request: RequestTrace) -> None:
            with context.serving(request):
                await batcher.submit(np.zeros((3, 2, 2), dtype=np.float32))

        untraced = batcher.submit(np.zeros((3, 2, 2), dtype=np.float32))  # shares a batch, links nothing
        await asyncio.gather(*(one(t) for t in traces[:2]), untraced)
        await one(traces[2])  # a batch of its own (the first one is full at 3)
        await batcher.stop()
        for t in traces:
            t.finish({})
        return traces

    traces = asyncio.run(asyncio.wait_for(scenario(), 10))
    spans = exported.get_finished_spans()
    batches = by_name(spans, "catdog.batch")
    assert len(batches) == 2
    first = next(b for b in batches if b.attributes is not None and b.attributes["catdog.batch.size"] == 3)
    assert first.attributes is not None and first.attributes["catdog.batch.traced"] == 2
    linked = {(link.context.trace_id, link.context.span_id) for link in first.links}
    assert linked == {(t.span_context.trace_id, t.span_context.span_id) for t in traces[:2]}
    assert first.parent is not None and first.parent.span_id == traces[0].span_context.span_id
    for request in traces:
        mine = [s for s in spans if s.context.trace_id == request.span_context.trace_id]
        (queue,) = by_name(mine, "catdog.queue")
        (inference,) = by_name(mine, "catdog.inference")
        assert queue.parent is not None and queue.parent.span_id == request.span_context.span_id
        assert queue.end_time is not None and inference.start_time is not None
        assert queue.end_time <= inference.start_time
        (to_batch,) = inference.links  # back to the batch it ran in
        assert to_batch.context.span_id in {b.context.span_id for b in batches}


def test_untraced_jobs_cost_no_spans() -> None:
    tracing, exported = in_memory()

    async def scenario() -> None:
        batcher = MicroBatcher("m", lambda b: np.zeros((b.shape[0], 2)), max_batch_size=2, max_wait_s=0.0, queue_max=4)
        batcher.start()
        await batcher.submit(np.zeros((3, 2, 2), dtype=np.float32))
        await batcher.stop()

    asyncio.run(asyncio.wait_for(scenario(), 10))
    assert exported.get_finished_spans() == ()
    assert tracing is not None
