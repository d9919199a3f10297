"""Payload events as KServe's logger shapes them, parsed back with the `cloudevents` SDK from a real HTTP sink;
the byte cap; and a dead or slow sink costing the caller nothing but counted drops and failures."""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from loadtest.ports import free_port
from service.payloadlog.events import REQUEST_TYPE, RESPONSE_TYPE
from service.payloadlog.record import PayloadRecord
from service.payloadlog.sender import PayloadLogger, PayloadMetrics
from tests.support.cesink import Sink, running_sink


@dataclass(frozen=True)
class Upload:
    data: bytes
    filename: str | None = None


@dataclass(frozen=True)
class Decoded:
    format: str
    width: int
    height: int


@dataclass(frozen=True)
class Answer:
    label: str
    confidence: float
    probabilities: dict[str, float]


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(out, "PNG")
    return out.getvalue()


def record(request_id: str = "req-1", images: list[bytes] | None = None) -> PayloadRecord:
    images = images if images is not None else [png(4, 3)]
    r = PayloadRecord(
        request_id, "pretrained", "2.0", "oip_rest", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    )
    r.uploads = [Upload(data, f"{i}.png") for i, data in enumerate(images)]
    r.images = [Decoded("PNG", 4, 3) for _ in images]
    r.answers = [Answer("cat", 0.9, {"cat": 0.9, "dog": 0.1}) for _ in images]
    return r


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def sink() -> Iterator[Sink]:
    yield from running_sink()


def logger(url: str, registry: CollectorRegistry, **options: object) -> PayloadLogger:
    return PayloadLogger(url, PayloadMetrics(registry), source="urn:catdog:test", **options)  # type: ignore[arg-type]


def test_request_and_response_events_in_kserve_shape(sink: Sink) -> None:
    registry = CollectorRegistry()
    payloads = logger(sink.url, registry)
    payloads.start()
    image = png(4, 3)
    assert payloads.submit(record(images=[image]))
    events = sink.wait_for(lambda e: len(e) == 2)
    payloads.stop()
    request, response = sorted(events, key=lambda e: e["type"])
    for event in (request, response):
        assert event["id"] == "req-1" and event["source"] == "urn:catdog:test" and event["specversion"] == "1.0"
        assert event["model"] == "pretrained" and event["modelversion"] == "2.0"
        assert event["inferenceservicename"] == "pretrained" and event["protocol"] == "oip_rest"
        assert event["traceparent"].startswith("00-aaaa")
    assert request["type"] == REQUEST_TYPE and response["type"] == RESPONSE_TYPE
    (entry,) = request.data["inputs"]
    assert base64.b64decode(entry["data"]) == image
    assert entry["sha256"] == hashlib.sha256(image).hexdigest()
    assert (entry["format"], entry["width"], entry["height"], entry["size"]) == ("PNG", 4, 3, len(image))
    assert response["status"] == "200"
    assert response.data["outputs"] == [{"label": "cat", "confidence": 0.9, "probabilities": {"cat": 0.9, "dog": 0.1}}]
    assert value(registry, "catdog_payload_log_events_total", kind="request", result="sent") == 1
    assert value(registry, "catdog_payload_log_events_total", kind="response", result="sent") == 1
    assert value(registry, "catdog_payload_log_send_seconds_count") == 2


def test_images_past_the_cap_are_digests_and_failures_carry_their_error(sink: Sink) -> None:
    registry = CollectorRegistry()
    big, small = png(64, 64), png(4, 3)
    payloads = logger(sink.url, registry, max_bytes=len(big) - 1)
    payloads.start()
    failed = record("req-2", images=[big, small])
    failed.answers = []
    failed.error_code, failed.error_message, failed.status = "timeout", "no answer within 1 s", 504
    payloads.submit(failed)
    events = sink.wait_for(lambda e: len(e) == 2)
    payloads.stop()
    request = next(e for e in events if e["type"] == REQUEST_TYPE)
    response = next(e for e in events if e["type"] == RESPONSE_TYPE)
    first, second = request.data["inputs"]
    assert first["truncated"] and "data" not in first
    assert first["sha256"] == hashlib.sha256(big).hexdigest() and first["size"] == len(big)
    assert (first["format"], first["width"], first["height"]) == ("PNG", 4, 3)
    assert base64.b64decode(second["data"]) == small  # still within the cap
    assert response["errorcode"] == "timeout" and response["status"] == "504"
    assert response.data["error"] == {"code": "timeout", "message": "no answer within 1 s"}


def test_tensor_inputs_and_modes(sink: Sink) -> None:
    registry = CollectorRegistry()
    payloads = logger(sink.url, registry, mode="request")
    payloads.start()
    r = record("req-3", images=[])
    r.tensor = np.ones((1, 3, 2, 2), dtype=np.float32)
    payloads.submit(r)
    (event,) = sink.wait_for(lambda e: len(e) == 1)
    payloads.stop()
    assert sink.posts == 1 and event["type"] == REQUEST_TYPE
    (entry,) = event.data["inputs"]
    assert entry["kind"] == "tensor" and entry["shape"] == [1, 3, 2, 2]
    assert np.frombuffer(base64.b64decode(entry["data"]), "<f4").tolist() == [1.0] * 12


def test_sampling() -> None:
    payloads = logger("http://127.0.0.1:9/", CollectorRegistry(), sample_rate=0.0)
    assert payloads.begin("r") is None
    everything = logger("http://127.0.0.1:9/", CollectorRegistry(), sample_rate=1.0)
    assert everything.begin("r") is not None
    half = logger("http://127.0.0.1:9/", CollectorRegistry(), sample_rate=0.5)
    kept = sum(half.begin("r") is not None for _ in range(2000))
    assert 800 < kept < 1200


def test_a_dead_sink_costs_retries_and_failures_never_the_caller() -> None:
    registry = CollectorRegistry()
    payloads = logger(f"http://127.0.0.1:{free_port()}/", registry, retries=2, backoff_s=0.01, mode="response")
    payloads.start()
    assert payloads.submit(record())
    deadline = time.monotonic() + 30
    while value(registry, "catdog_payload_log_events_total", kind="response", result="failed") < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    payloads.stop()
    assert value(registry, "catdog_payload_log_retries_total") == 2


def test_a_full_queue_drops_at_once() -> None:
    registry = CollectorRegistry()
    with_slow = running_sink(delay_s=1.0)
    sink = next(with_slow)
    try:
        payloads = logger(sink.url, registry, queue_max=2, timeout_s=5)
        payloads.start()
        started = time.perf_counter()
        results = [payloads.submit(record(f"r{i}")) for i in range(50)]
        assert time.perf_counter() - started < 0.5  # never waits for the sink (generous on a loaded machine)
        assert results.count(True) <= 3 and results.count(False) >= 47
        dropped = value(registry, "catdog_payload_log_events_total", kind="request", result="dropped")
        assert dropped == results.count(False)
        assert value(registry, "catdog_payload_log_events_total", kind="response", result="dropped") == dropped
        payloads.stop(timeout_s=0.1)
    finally:
        with_slow.close()


def test_the_byte_budget_bounds_held_memory() -> None:
    registry = CollectorRegistry()
    payloads = logger("http://127.0.0.1:9/", registry, queue_bytes=1000)  # not started: nothing leaves the queue
    assert not payloads.submit(record(images=[b"x" * 1001]))
    assert payloads.submit(record(images=[b"x" * 600]))
    assert not payloads.submit(record(images=[b"x" * 600]))
    assert value(registry, "catdog_payload_log_queue_depth") == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="mode"):
        logger("http://sink/", CollectorRegistry(), mode="both")
    with pytest.raises(ValueError, match="URL"):
        logger("ftp://sink/", CollectorRegistry())
