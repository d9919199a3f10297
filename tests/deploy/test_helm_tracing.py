"""The chart's tracing and payload-log values: OpenTelemetry's standard variables only with config.tracing on,
the payload log settings as CATDOG_ variables, and the schema refusing what the service would refuse."""

from __future__ import annotations

import pytest

from tests.deploy.helm_support import by_kind, render


def config_map(values: dict[str, object]) -> dict[str, str]:
    """The service's settings ConfigMap (the other one holds the dashboard)."""
    (settings,) = [c for c in by_kind(render(values), "ConfigMap") if "CATDOG_HOST" in c.get("data", {})]
    return dict(settings["data"])


def test_tracing_off_sets_no_otel_variables() -> None:
    data = config_map({})
    assert data["CATDOG_TRACING"] == "false"
    assert not [key for key in data if key.startswith("OTEL_")]
    assert "CATDOG_PAYLOAD_LOG_URL" not in data


def test_tracing_on_sets_the_standard_variables() -> None:
    data = config_map(
        {
            "config": {"tracing": True, "payload_log_url": "http://sink.logging:8080/", "payload_log_mode": "response"},
            "otel": {"endpoint": "http://otel-collector.observability:4317", "resourceAttributes": "env=prod"},
        }
    )
    assert data["CATDOG_TRACING"] == "true"
    assert data["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
    assert data["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert data["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert data["OTEL_TRACES_SAMPLER_ARG"] == "0.1"
    assert data["OTEL_RESOURCE_ATTRIBUTES"] == "env=prod"
    assert data["OTEL_SERVICE_NAME"]  # the release's full name by default
    assert data["CATDOG_PAYLOAD_LOG_URL"] == "http://sink.logging:8080/"
    assert data["CATDOG_PAYLOAD_LOG_MODE"] == "response"


@pytest.mark.parametrize(
    "values",
    [
        {"otel": {"protocol": "http/json"}},
        {"otel": {"sampler": "sometimes"}},
        {"config": {"payload_log_mode": "both"}},
        {"config": {"payload_log_sample_rate": 2}},
        {"config": {"payload_log_url": "ftp://sink/"}},
    ],
)
def test_the_schema_refuses_bad_values(values: dict[str, object]) -> None:
    with pytest.raises(Exception, match=r"(?i)schema|values|validat"):
        render(values)
