"""Exemplars: the latency histograms carry the trace and span ids of sampled requests, served as OpenMetrics when
asked for; a real Prometheus (exemplar storage on) scrapes them, and /api/v1/query_exemplars gives back trace
ids that the OTLP receiver got spans for."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import require_tool
from tests.deploy.test_dashboard import Prometheus
from tests.support.images import RED, encode, solid
from tests.support.otlp import OtlpReceiver, running_receiver
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.slow

OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    yield from running_receiver()


@pytest.fixture(scope="module")
def traced(receiver: OtlpReceiver, tiny_repository: Path) -> Iterator[ServiceProcess]:
    with ServiceProcess({**receiver.env("grpc"), "CATDOG_MODEL_DIR": str(tiny_repository)}) as service:
        yield service


def predict(service: ServiceProcess) -> str:
    response = service.client.post("/predict/pretrained", files={"file": ("r.jpg", encode(solid(RED), "JPEG"))})
    assert response.status_code == 200
    return str(response.headers["x-request-id"])


def test_metrics_negotiate_openmetrics_with_exemplars(traced: ServiceProcess) -> None:
    predict(traced)
    plain = traced.client.get("/metrics")
    assert plain.headers["content-type"].startswith("text/plain")
    assert "trace_id" not in plain.text  # the classic format has no exemplars
    open_metrics = traced.client.get("/metrics", headers={"accept": OPENMETRICS})
    assert open_metrics.headers["content-type"].startswith("application/openmetrics-text")
    assert open_metrics.text.rstrip().endswith("# EOF")
    lines = [line for line in open_metrics.text.splitlines() if "# {" in line]
    assert any(line.startswith("catdog_request_duration_seconds_bucket{") for line in lines)
    assert any(line.startswith("http_request_duration_seconds_bucket{") for line in lines)
    assert all('trace_id="' in line and 'span_id="' in line for line in lines)


def test_prometheus_stores_exemplars_that_lead_to_received_traces(
    traced: ServiceProcess, receiver: OtlpReceiver
) -> None:
    require_tool("prometheus")
    prometheus = Prometheus(f"127.0.0.1:{traced.port}", ("--enable-feature=exemplar-storage",)).start()
    try:
        prometheus.wait_for_scrapes(1)
        started = time.time() - 60
        for _ in range(20):
            predict(traced)
        prometheus.wait_for_scrapes(2)
        exemplars: list[dict[str, str]] = []
        deadline = time.monotonic() + 60
        while not exemplars and time.monotonic() < deadline:
            response = prometheus.client.get(
                "/api/v1/query_exemplars",
                params={"query": "catdog_request_duration_seconds_bucket", "start": started, "end": time.time() + 60},
            )
            body = response.json()
            assert body["status"] == "success", body
            exemplars = [e["labels"] for series in body["data"] for e in series["exemplars"]]
            if not exemplars:
                time.sleep(1)
        assert exemplars, prometheus.output()[-2000:]
        ids = {(e["trace_id"], e["span_id"]) for e in exemplars}
        # Each exemplar names a request's own server span, and the receiver got it.
        spans = receiver.wait_for(lambda spans: ids <= {(s.trace_id, s.span_id) for s in spans})
        by_id = {(s.trace_id, s.span_id): s for s in spans}
        assert {by_id[i].name for i in ids} == {"POST /predict/pretrained"}
        assert all(by_id[i].kind == 2 for i in ids)
    finally:
        prometheus.stop()


def test_unsampled_requests_carry_no_exemplar(receiver: OtlpReceiver, tiny_repository: Path) -> None:
    env = {
        **receiver.env("http/protobuf"),
        "CATDOG_MODEL_DIR": str(tiny_repository),
        "OTEL_TRACES_SAMPLER": "always_off",
    }
    with ServiceProcess(env) as service:
        request_id = predict(service)
        text = httpx.get(f"{service.base_url}/metrics", headers={"accept": OPENMETRICS}).text
        assert "trace_id" not in text
        # The access line still says which trace the request was part of.
        (line,) = service.wait_for_log(lambda r: r.get("request_id") == request_id and r.get("event") == "request")
        assert len(line["trace_id"]) == 32
