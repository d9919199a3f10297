"""Payload logging of the real service into a real HTTP sink, parsed with the `cloudevents` SDK: both transports'
requests and answers in KServe's logger shape, failures with their error, images past the cap as digests, and a
dead or slow sink under load costing no inference, only counted drops and failures."""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from cloudevents.http import CloudEvent
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from loadtest.ports import free_port
from tests.support.cesink import Sink, running_sink
from tests.support.images import RED, encode, solid
from tests.support.otlp import running_receiver
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.slow

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    yield from running_sink()


@pytest.fixture(scope="module")
def logged(sink: Sink, tiny_repository: Path) -> Iterator[ServiceProcess]:
    env = {
        "CATDOG_MODEL_DIR": str(tiny_repository),
        "CATDOG_PAYLOAD_LOG_URL": sink.url,
        "CATDOG_PAYLOAD_LOG_MAX_BYTES": "4000",
        "CATDOG_PAYLOAD_LOG_SOURCE": "urn:catdog:test",
    }
    with ServiceProcess(env) as service:
        yield service


def noise_png(size: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def events_of(sink: Sink, request_id: str, count: int = 2) -> dict[str, CloudEvent]:
    events = sink.wait_for(lambda got: sum(e["id"] == request_id for e in got) >= count)
    return {e["type"]: e for e in events if e["id"] == request_id}


def metric(service: ServiceProcess, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(service.client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_rest_request_and_answer_reach_the_sink(logged: ServiceProcess, sink: Sink) -> None:
    image = encode(solid(RED, (64, 48)), "JPEG")
    response = logged.client.post("/predict/pretrained", files={"file": ("red.jpg", image, "image/jpeg")})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    events = events_of(sink, request_id)
    request, answer = events[REQUEST], events[RESPONSE]
    for event in (request, answer):
        assert event["source"] == "urn:catdog:test" and event["specversion"] == "1.0"
        assert event["model"] == "pretrained" and event["inferenceservicename"] == "pretrained"
        assert event["modelversion"] == response.json()["model_version"]
        assert event["protocol"] == "catdog"
        assert "traceparent" not in event  # tracing is off here
    (entry,) = request.data["inputs"]
    assert base64.b64decode(entry["data"]) == image
    assert (entry["format"], entry["width"], entry["height"]) == ("JPEG", 64, 48)
    assert entry["filename"] == "red.jpg"
    assert answer["status"] == "200"
    (output,) = answer.data["outputs"]
    assert output["label"] == response.json()["label"] == "cat"
    assert output["probabilities"] == pytest.approx(response.json()["probabilities"])


def test_grpc_requests_are_logged_too(logged: ServiceProcess, sink: Sink) -> None:
    client = triton_grpc.InferenceServerClient(logged.grpc_target)
    try:
        image = triton_grpc.InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(np.array([encode(solid(RED), "PNG")], dtype=np.object_))
        client.infer("scratch", [image], headers={"x-request-id": "grpc-logged-1"})
    finally:
        client.close()
    events = events_of(sink, "grpc-logged-1")
    assert events[REQUEST]["protocol"] == "oip_grpc" and events[REQUEST]["model"] == "scratch"
    assert events[REQUEST].data["inputs"][0]["format"] == "PNG"
    assert events[RESPONSE].data["outputs"][0]["label"] == "cat"


def test_failed_requests_and_images_past_the_cap(logged: ServiceProcess, sink: Sink) -> None:
    cut = encode(solid(RED, (64, 48)), "JPEG")[:200]
    response = logged.client.post("/predict/pretrained", files={"file": ("cut.jpg", cut, "image/jpeg")})
    assert response.status_code == 400
    events = events_of(sink, response.headers["x-request-id"])
    assert events[RESPONSE]["errorcode"] == "invalid_image" and events[RESPONSE]["status"] == "400"
    assert events[RESPONSE].data["error"]["code"] == "invalid_image"
    assert base64.b64decode(events[REQUEST].data["inputs"][0]["data"]) == cut  # what the client sent

    big = noise_png(64)
    assert len(big) > 4000
    response = logged.client.post("/predict/pretrained", files={"file": ("big.png", big, "image/png")})
    assert response.status_code == 200
    (entry,) = events_of(sink, response.headers["x-request-id"])[REQUEST].data["inputs"]
    assert entry["truncated"] and "data" not in entry
    assert entry["sha256"] == hashlib.sha256(big).hexdigest() and entry["size"] == len(big)
    assert (entry["format"], entry["width"], entry["height"]) == ("PNG", 64, 64)


def test_traced_events_carry_the_requests_traceparent(sink: Sink, tiny_repository: Path) -> None:
    receiver_gen = running_receiver()
    receiver = next(receiver_gen)
    env = {**receiver.env("grpc"), "CATDOG_MODEL_DIR": str(tiny_repository), "CATDOG_PAYLOAD_LOG_URL": sink.url}
    try:
        with ServiceProcess(env) as service:
            response = service.client.post("/predict/scratch", files={"file": ("r.png", encode(solid(RED), "PNG"))})
            assert response.status_code == 200
            events = events_of(sink, response.headers["x-request-id"])
            version, trace_id, span_id, flags = events[REQUEST]["traceparent"].split("-")
            assert (version, flags) == ("00", "01") and events[RESPONSE]["traceparent"] == events[REQUEST][
                "traceparent"
            ]
            spans = receiver.wait_for(lambda got: any(s.span_id == span_id for s in got))
            (server,) = [s for s in spans if s.span_id == span_id]
            assert server.trace_id == trace_id and server.name == "POST /predict/scratch"
    finally:
        receiver_gen.close()


def load(service: ServiceProcess, count: int) -> list[int]:
    image = encode(solid(RED), "JPEG")

    def post(_: int) -> int:
        return service.client.post("/predict/pretrained", files={"file": ("r.jpg", image)}).status_code

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(post, range(count)))


def settled(service: ServiceProcess, expected: float, timeout: float = 60.0) -> dict[str, float]:
    """Events by result once every one of `expected` is accounted for (sent, failed or dropped)."""
    deadline = time.monotonic() + timeout
    while True:
        found = {
            result: metric(service, "catdog_payload_log_events_total", result=result)
            for result in ("sent", "failed", "dropped")
        }
        if sum(found.values()) >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_a_dead_sink_under_load_fails_no_inference(tiny_repository: Path) -> None:
    env = {
        "CATDOG_MODEL_DIR": str(tiny_repository),
        "CATDOG_PAYLOAD_LOG_URL": f"http://127.0.0.1:{free_port()}/",  # nothing listens there
        "CATDOG_PAYLOAD_LOG_QUEUE": "4",
        "CATDOG_PAYLOAD_LOG_RETRIES": "1",
    }
    with ServiceProcess(env) as service:
        assert load(service, 80) == [200] * 80
        found = settled(service, 160)
        assert found["sent"] == 0 and found["dropped"] > 0 and found["failed"] > 0
        assert found["failed"] + found["dropped"] == 160
        assert metric(service, "catdog_payload_log_retries_total") >= found["failed"] / 2


def test_a_slow_sink_under_load_fails_no_inference(tiny_repository: Path) -> None:
    slow = running_sink(delay_s=0.5)
    sink = next(slow)
    env = {
        "CATDOG_MODEL_DIR": str(tiny_repository),
        "CATDOG_PAYLOAD_LOG_URL": sink.url,
        "CATDOG_PAYLOAD_LOG_QUEUE": "4",
    }
    try:
        with ServiceProcess(env) as service:
            assert load(service, 80) == [200] * 80
            found = settled(service, 160)
            assert found["dropped"] > 0 and found["sent"] > 0 and found["failed"] == 0
            assert found["sent"] + found["dropped"] == 160
            assert metric(service, "catdog_payload_log_send_seconds_count") >= found["sent"]
    finally:
        slow.close()
