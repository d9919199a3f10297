"""The compose stack's access-control override: its settings, and its Prometheus config scraping a keyed
service for real (the Debian `prometheus` binary) with a `metrics` key from a file, beside a job without one that
the service refuses. No containers: the compose stack itself is tests/deploy/test_compose.py's."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from loadtest.ports import free_port
from tests.conftest import require_tool
from tests.support.access import METRICS, keys_volume
from tests.support.server import REPO_ROOT, ServiceProcess

COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
OVERRIDE = COMPOSE_DIR / "docker-compose.access.yml"
PROMETHEUS_ACCESS = COMPOSE_DIR / "prometheus" / "prometheus.access.yml"


def test_the_override_mounts_the_secrets_folder_and_probes_with_catdog() -> None:
    services = yaml.safe_load(OVERRIDE.read_text())["services"]
    api = services["api"]
    assert api["environment"]["CATDOG_API_KEYS_FILE"] == "/run/secrets/catdog/keys.json"
    assert "./secrets:/run/secrets/catdog:ro" in api["volumes"]  # a folder, not the file: swaps reach it
    assert api["healthcheck"]["test"] == ["CMD", "catdog", "probe", "/readyz"]
    mounts = services["prometheus"]["volumes"]
    assert "./prometheus/prometheus.access.yml:/etc/prometheus/prometheus.yml:ro" in mounts
    assert "./secrets/metrics.key:/etc/prometheus/metrics.key:ro" in mounts
    assert "/deploy/compose/secrets/" in (REPO_ROOT / ".gitignore").read_text()
    job = yaml.safe_load(PROMETHEUS_ACCESS.read_text())["scrape_configs"][0]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "/etc/prometheus/metrics.key"}


@pytest.fixture(scope="module")
def keyed(tiny_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    volume = keys_volume(tmp_path_factory.mktemp("keys"))
    env = {"CATDOG_MODEL_DIR": str(tiny_repository), "CATDOG_API_KEYS_FILE": str(volume.path("keys.json"))}
    with ServiceProcess(env) as service:
        yield service


def test_prometheus_scrapes_with_the_metrics_key(keyed: ServiceProcess) -> None:
    work = Path(tempfile.mkdtemp(prefix="catdog-prometheus-access-"))
    (work / "metrics.key").write_text(METRICS + "\n")
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_ACCESS.read_text())
    job = config["scrape_configs"][0]
    job["authorization"]["credentials_file"] = str(work / "metrics.key")
    job["static_configs"][0]["targets"] = [f"127.0.0.1:{keyed.port}"]
    anonymous = {k: v for k, v in job.items() if k != "authorization"} | {"job_name": "anonymous"}
    config["scrape_configs"].append(anonymous)
    config["global"]["scrape_interval"] = "1s"
    config["global"]["scrape_timeout"] = "1s"
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (work / "log").open("wb")
    proc = subprocess.Popen(
        [
            require_tool("prometheus"),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

            def up() -> dict[str, float]:
                try:  # before it is ready Prometheus answers 503 in plain text
                    body = client.get("/api/v1/query", params={"query": "up"}).json()
                except (httpx.TransportError, ValueError):
                    return {}
                return {r["metric"]["job"]: float(r["value"][1]) for r in body.get("data", {}).get("result", [])}

            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and set(up()) != {"catdog", "anonymous"}:
                assert proc.poll() is None, (work / "log").read_text()
                time.sleep(0.5)
            assert up() == {"catdog": 1.0, "anonymous": 0.0}, (work / "log").read_text()[-2000:]
            keys = client.get("/api/v1/query", params={"query": 'catdog_api_keys{job="catdog"}'}).json()
            assert float(keys["data"]["result"][0]["value"][1]) == 3
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    assert keyed.wait_for_log(lambda r: r.get("path") == "/metrics" and r.get("key") == "prometheus")
    assert keyed.wait_for_log(lambda r: r.get("path") == "/metrics" and r.get("status") == 401)
