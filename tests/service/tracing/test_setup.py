"""The SDK built from the standard OTEL_ variables exports over OTLP gRPC and HTTP to a real receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.tracing.setup import Tracing, otlp_protocol
from tests.support.otlp import OtlpReceiver, running_receiver


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    yield from running_receiver()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_spans_reach_the_receiver_over_each_protocol(
    receiver: OtlpReceiver, protocol: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in receiver.env(protocol).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test,service.namespace=pets")
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    tracing = Tracing.from_environment("1.2.3")
    request = tracing.server_span(f"POST {protocol}", [], {"catdog.model": "m"})
    request.finish({"http.response.status_code": 200})
    tracing.shutdown()
    spans = receiver.wait_for(lambda spans: any(s.name == f"POST {protocol}" for s in spans))
    (span,) = [s for s in spans if s.name == f"POST {protocol}"]
    assert span.via == ("grpc" if protocol == "grpc" else "http")
    assert span.trace_id == request.trace_id and span.kind == 2
    assert span.attributes == {"catdog.model": "m", "http.response.status_code": 200}
    assert span.resource["service.name"] == "catdog"
    assert span.resource["service.version"] == "1.2.3"
    assert span.resource["deployment.environment"] == "test"


def test_service_name_and_sampler_come_from_the_environment(
    receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in receiver.env("grpc").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "catdog-canary")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "0")
    tracing = Tracing.from_environment("1")
    dropped = tracing.server_span("never", [], {})
    assert not dropped.recording
    dropped.finish({})
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "1")
    kept = Tracing.from_environment("1")
    request = kept.server_span("kept", [], {})
    request.finish({})
    kept.shutdown()
    tracing.shutdown()
    spans = receiver.wait_for(lambda spans: any(s.name == "kept" for s in spans))
    assert not any(s.name == "never" for s in spans)
    assert next(s for s in spans if s.name == "kept").resource["service.name"] == "catdog-canary"


def test_protocol_choice() -> None:
    assert otlp_protocol({}) == "http/protobuf"  # the specification's default
    assert otlp_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}) == "grpc"
    assert otlp_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"})
    with pytest.raises(ValueError, match="http/json"):
        otlp_protocol({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
