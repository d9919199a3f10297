"""The chart's gRPC additions (the Open Inference Protocol's second port): container and Service ports, the
settings, native gRPC probes, the NetworkPolicy, and the switch that turns it all off. Rendered with Helm's own
engine and validated strictly on every supported Kubernetes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.deploy.helm_support import (
    CRD_KINDS,
    KUBE_VERSIONS,
    container,
    env_config,
    kube_validate,
    notes,
    one,
    render,
    render_raw,
)

GRPC_PROBES = {"grpc": {"probes": True}, "networkPolicy": {"enabled": True}}


def _ports(docs: list[dict[str, Any]]) -> tuple[dict[str, int], dict[str, Any]]:
    container_ports = {p["name"]: p["containerPort"] for p in container(docs)["ports"]}
    service_ports = {p["name"]: p for p in one(docs, "Service")["spec"]["ports"]}
    return container_ports, service_ports


def test_default_serves_grpc_on_8001_with_http_probes() -> None:
    docs = render()
    container_ports, service_ports = _ports(docs)
    assert container_ports == {"http": 8000, "grpc": 8001}
    assert service_ports["grpc"] == {"name": "grpc", "port": 8001, "targetPort": "grpc", "protocol": "TCP"}
    env = env_config(docs)
    assert (env["CATDOG_GRPC_ENABLED"], env["CATDOG_GRPC_PORT"]) == ("true", "8001")
    c = container(docs)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "httpGet" in c[probe] and "grpc" not in c[probe]


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_native_grpc_probes_validate(kube_version: str) -> None:
    docs = render(GRPC_PROBES, kube_version)
    c = container(docs)
    assert c["startupProbe"]["grpc"] == {"port": 8001, "service": ""}
    assert c["readinessProbe"]["grpc"] == {"port": 8001, "service": ""}
    assert c["livenessProbe"]["grpc"] == {"port": 8001, "service": "liveness"}
    assert c["readinessProbe"]["periodSeconds"] == 5  # the probe timings still come from probes.*
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "httpGet" not in c[probe]
    policy = one(docs, "NetworkPolicy")
    assert {"port": "grpc", "protocol": "TCP"} in policy["spec"]["ingress"][0]["ports"]
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CRD_KINDS:
            kube_validate(doc, kube_version)


def test_custom_ports() -> None:
    docs = render({"grpc": {"containerPort": 9001, "servicePort": 443, "probes": True}})
    container_ports, service_ports = _ports(docs)
    assert container_ports["grpc"] == 9001
    assert service_ports["grpc"]["port"] == 443
    assert env_config(docs)["CATDOG_GRPC_PORT"] == "9001"
    assert container(docs)["readinessProbe"]["grpc"]["port"] == 9001


def test_grpc_off() -> None:
    docs = render({"grpc": {"enabled": False}, "networkPolicy": {"enabled": True}})
    container_ports, service_ports = _ports(docs)
    assert set(container_ports) == {"http"}
    assert set(service_ports) == {"http"}
    env = env_config(docs)
    assert env["CATDOG_GRPC_ENABLED"] == "false"
    assert "CATDOG_GRPC_PORT" not in env
    assert one(docs, "NetworkPolicy")["spec"]["ingress"][0]["ports"] == [{"port": "http", "protocol": "TCP"}]


def test_grpc_probes_without_grpc_is_refused() -> None:
    with pytest.raises(Exception, match=r"grpc\.probes needs grpc\.enabled"):
        render_raw({"grpc": {"enabled": False, "probes": True}})


@pytest.mark.parametrize(
    "values", [{"grpc": {"containerPort": 80}}, {"grpc": {"probes": "yes"}}, {"grpc": {"tls": True}}]
)
def test_schema_refuses_bad_values(values: dict[str, Any]) -> None:
    with pytest.raises(Exception, match="grpc"):
        render_raw(values)


def test_notes_say_where_grpc_is() -> None:
    assert "port-forward svc/rel-catdog 8001:8001" in notes()
    assert "8001" not in notes({"grpc": {"enabled": False}})
