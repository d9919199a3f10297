"""The compose stack's OpenTelemetry Collector config, checked offline as far as it can be (no collector binary
or image can be had here): every pipeline names components that are defined and that the contrib distribution
ships, its OTLP receiver listens where the compose file publishes and where the API exports, and the file
exporter writes into a mounted volume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.support.server import REPO_ROOT

COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
CONFIG = COMPOSE_DIR / "otel-collector" / "config.yaml"
# Component types of otel/opentelemetry-collector-contrib that this config may use (each is in the contrib
# distribution's manifest: receiver/otlpreceiver, processor/{batch,memorylimiter}processor,
# exporter/{debug,file,otlp,otlphttp}exporter, extension/healthcheckextension).
CONTRIB = {
    "receivers": {"otlp"},
    "processors": {"batch", "memory_limiter"},
    "exporters": {"debug", "file", "otlp", "otlphttp"},
    "extensions": {"health_check"},
}


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def kind(component: str) -> str:
    """`otlp/backend` -> `otlp` (a component id is type[/name])."""
    return component.split("/", 1)[0]


def test_pipelines_use_defined_contrib_components() -> None:
    config = load(CONFIG)
    service = config["service"]
    for section, allowed in CONTRIB.items():
        for component in config.get(section, {}):
            assert kind(component) in allowed, f"{section}: {component}"
    for extension in service["extensions"]:
        assert extension in config["extensions"]
    assert set(service["pipelines"]) == {"traces"}
    for name, pipeline in service["pipelines"].items():
        for section in ("receivers", "processors", "exporters"):
            assert pipeline[section], f"{name} has no {section}"
            for component in pipeline[section]:
                assert component in config[section], f"{name}: {component} is not defined under {section}"
    # The memory limiter goes first, as the collector's documentation asks.
    assert service["pipelines"]["traces"]["processors"][0] == "memory_limiter"


def test_the_api_exports_to_the_collectors_receiver() -> None:
    compose = load(COMPOSE_DIR / "docker-compose.yml")
    host = load(COMPOSE_DIR / "docker-compose.host.yml")
    collector = compose["services"]["otel-collector"]
    protocols = load(CONFIG)["receivers"]["otlp"]["protocols"]
    grpc_port = int(protocols["grpc"]["endpoint"].rsplit(":", 1)[1])
    http_port = int(protocols["http"]["endpoint"].rsplit(":", 1)[1])
    published = {int(str(p).rsplit(":", 1)[1]) for p in collector["ports"]}
    assert published == {grpc_port, http_port}

    api = compose["services"]["api"]["environment"]
    assert api["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    default = api["OTEL_EXPORTER_OTLP_ENDPOINT"].split(":-", 1)[1].rstrip("}")
    assert (urlsplit(default).hostname, urlsplit(default).port) == ("otel-collector", grpc_port)
    assert api["CATDOG_TRACING"].startswith("${CATDOG_TRACING:-true")
    on_host = urlsplit(host["services"]["api"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert (on_host.hostname, on_host.port) == ("127.0.0.1", grpc_port)
    assert host["services"]["otel-collector"]["network_mode"] == "host"


def test_config_and_output_are_mounted_where_the_collector_looks() -> None:
    collector = load(COMPOSE_DIR / "docker-compose.yml")["services"]["otel-collector"]
    (flag,) = collector["command"]
    config_path = flag.split("=", 1)[1]
    mounts = dict(str(v).split(":")[:2][::-1] for v in collector["volumes"])
    assert (COMPOSE_DIR / mounts[config_path]).resolve() == CONFIG
    output = Path(load(CONFIG)["exporters"]["file"]["path"])
    assert mounts[str(output.parent)] == "otel-traces"
    assert "otel-traces" in load(COMPOSE_DIR / "docker-compose.yml")["volumes"]
    assert config_path in " ".join(collector["healthcheck"]["test"])  # the check validates the same file
    assert collector["image"].startswith("otel/opentelemetry-collector-contrib:")


def test_prometheus_stores_exemplars_and_grafana_links_them() -> None:
    compose = load(COMPOSE_DIR / "docker-compose.yml")
    assert "--enable-feature=exemplar-storage" in compose["services"]["prometheus"]["command"]
    (source,) = load(COMPOSE_DIR / "grafana" / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    (destination,) = source["jsonData"]["exemplarTraceIdDestinations"]
    assert destination["name"] == "trace_id"  # the exemplar label the service writes
    assert destination["url"] == "$TRACES_URL$${__value.raw}"
    assert "TRACES_URL" in compose["services"]["grafana"]["environment"]


def test_latency_panels_show_exemplars() -> None:
    """Every timeseries panel over a histogram that carries exemplars shows them (one target each)."""
    board = json.loads((COMPOSE_DIR / "grafana" / "dashboards" / "catdog.json").read_text())
    carrying = (
        "catdog_request_duration_seconds",
        "http_request_duration_seconds",
        "catdog_preprocess_duration_seconds",
    )
    found = []
    for panel in [p for top in board["panels"] for p in (top, *top.get("panels", []))]:
        targets = panel.get("targets", [])
        if panel["type"] == "timeseries" and any(name in t.get("expr", "") for t in targets for name in carrying):
            assert sum(bool(t.get("exemplar")) for t in targets) == 1, panel["title"]
            found.append(panel["title"])
    assert len(found) == 3, found
