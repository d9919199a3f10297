"""deploy/compose: the file is valid and complete, and podman-compose brings the API up from it.

Prometheus and Grafana images cannot be pulled here, so only the `api` service is started for real (from the
image test_container.py builds, with the host-network override); the Prometheus config and the dashboard are
exercised against the real Prometheus binary in test_dashboard.py.
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from PIL import Image

from loadtest.ports import free_port
from tests.conftest import require_tool
from tests.deploy.container_support import built_image, podman, podman_env
from tests.support.server import REPO_ROOT

COMPOSE_DIR = REPO_ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yml"
HOST_OVERRIDE = COMPOSE_DIR / "docker-compose.host.yml"


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of every bind mount (sources starting with . or /), short syntax."""
    out = []
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            out.append((source, target))
    return out


def test_compose_services_healthchecks_and_ordering() -> None:
    compose = load(COMPOSE)
    services = compose["services"]
    assert set(services) == {"api", "otel-collector", "prometheus", "grafana"}
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][0] == "CMD", name
        assert {"interval", "timeout", "retries"} <= set(check), name
    assert services["prometheus"]["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}
    api = services["api"]
    assert (COMPOSE_DIR / api["build"]["context"] / api["build"]["dockerfile"]).resolve() == (REPO_ROOT / "Dockerfile")
    assert api["read_only"] is True and "/tmp" in api["tmpfs"]
    assert api["user"] == "10001:10001"
    assert "/readyz" in " ".join(api["healthcheck"]["test"])


def test_compose_volumes_retention_and_grafana_access() -> None:
    compose = load(COMPOSE)
    services = compose["services"]
    assert {"prometheus-data", "grafana-data"} <= set(compose["volumes"])
    assert "prometheus-data:/prometheus" in services["prometheus"]["volumes"]
    assert "grafana-data:/var/lib/grafana" in services["grafana"]["volumes"]
    command = " ".join(services["prometheus"]["command"])
    assert "--storage.tsdb.retention.time=" in command
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    env = services["grafana"]["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    assert "GRAFANA_ADMIN_PASSWORD" in env["GF_SECURITY_ADMIN_PASSWORD"]


def test_every_mounted_path_exists_and_provisioning_points_at_the_dashboard() -> None:
    services = load(COMPOSE)["services"]
    mounts: dict[str, Path] = {}
    for service in services.values():
        for source, target in bind_mounts(service):
            path = (COMPOSE_DIR / source).resolve()
            assert path.exists(), f"{source} (mounted at {target}) does not exist"
            mounts[target] = path
    datasources = mounts["/etc/grafana/provisioning/datasources"]
    dashboards = mounts["/etc/grafana/provisioning/dashboards"]
    assert datasources.name == "datasources" and dashboards.name == "dashboards"
    assert datasources.parent == dashboards.parent == COMPOSE_DIR / "grafana" / "provisioning"
    (provider,) = load(dashboards / "catdog.yml")["providers"]
    dashboard_dir = mounts[provider["options"]["path"]]
    assert (dashboard_dir / "catdog.json").is_file()
    env = services["grafana"]["environment"]
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (dashboard_dir / Path(home).name).is_file() and home.startswith(provider["options"]["path"])
    (source,) = load(datasources / "prometheus.yml")["datasources"]
    for path in (COMPOSE, HOST_OVERRIDE):  # plain YAML: no compose-only tags such as !reset
        assert "!reset" not in path.read_text() and "!override" not in path.read_text()
    assert source["url"] == "$PROMETHEUS_URL" and "PROMETHEUS_URL" in env
    prometheus_config = mounts["/etc/prometheus/prometheus.yml"]
    targets = [
        t for job in load(prometheus_config)["scrape_configs"] for s in job["static_configs"] for t in s["targets"]
    ]
    assert targets == ["api:8000"]


def test_host_override_uses_host_networking_everywhere() -> None:
    override = load(HOST_OVERRIDE)["services"]
    assert set(override) == set(load(COMPOSE)["services"])
    assert all(service["network_mode"] == "host" for service in override.values())
    assert "api:127.0.0.1" in override["prometheus"]["extra_hosts"]


def _podman_compose() -> list[str]:
    local = Path(sys.executable).parent / "podman-compose"
    return [str(local)] if local.is_file() else [require_tool("podman-compose")]


def test_podman_compose_config_merges_the_override() -> None:
    require_tool("podman")
    proc = subprocess.run(
        [*_podman_compose(), "-f", str(COMPOSE), "-f", str(HOST_OVERRIDE), "config"],
        env={**podman_env(), "CATDOG_PORT": "18123"},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    merged = yaml.safe_load(proc.stdout)["services"]
    assert merged["api"]["network_mode"] == "host"
    assert str(merged["api"]["environment"]["CATDOG_PORT"]) == "18123"
    assert merged["prometheus"]["depends_on"]["api"]["condition"] == "service_healthy"


@pytest.mark.container
@pytest.mark.slow
def test_podman_compose_brings_up_the_api_with_host_networking() -> None:
    for tool in ("podman", "buildah", "runc", "debootstrap"):
        require_tool(tool)
    image = built_image()
    port = free_port()
    project = f"catdogtest{port}"
    env = {**podman_env(), "CATDOG_IMAGE": image.tag, "CATDOG_PORT": str(port), "CATDOG_GRPC_PORT": str(free_port())}
    compose = [*_podman_compose(), "-p", project, "-f", str(COMPOSE), "-f", str(HOST_OVERRIDE)]
    networks_before = set(podman("network", "ls", "--format", "{{.Name}}").stdout.split())
    started = time.monotonic()
    up = subprocess.run(
        [*compose, "up", "-d", "--no-build", "api"], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30.0)
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, _logs(compose, env)
            time.sleep(0.2)
        print(f"\npodman-compose up -> ready in {time.monotonic() - started:.1f} s on port {port}")
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (230, 20, 20)).save(buf, format="PNG")
        response = client.post("/predict/pretrained", files={"file": ("red.png", buf.getvalue())})
        assert response.status_code == 200, response.text
        client.close()
        listed = podman("ps", "--filter", f"label=io.podman.compose.project={project}", "--format", "{{.Names}}")
        (name,) = listed.stdout.split()
        inspect = podman("container", "inspect", name, "--format", "{{.HostConfig.ReadonlyRootfs}} {{.Config.User}}")
        assert inspect.stdout.split() == ["true", "10001:10001"]
        health = podman("healthcheck", "run", name, check=False, timeout=30)
        assert health.returncode == 0, health.stdout + health.stderr
        assert set(podman("network", "ls", "--format", "{{.Name}}").stdout.split()) == networks_before, (
            "podman-compose created a network; host networking must not"
        )
    finally:
        subprocess.run([*compose, "down", "-v", "-t", "10"], env=env, capture_output=True, timeout=120, check=False)


def _logs(compose: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run([*compose, "logs", "api"], env=env, capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout + proc.stderr
