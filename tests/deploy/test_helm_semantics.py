"""What the rendered objects mean: probes, security, draining, GPU scheduling, autoscaling, routing, monitoring."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from tests.deploy.helm_support import (
    CHART,
    COMPOSE_DASHBOARD,
    FULLNAME,
    NEWEST_KUBE,
    OLDEST_KUBE,
    SCENARIOS,
    by_kind,
    container,
    env_config,
    notes,
    one,
    render,
    render_scenario,
)

CONTAINER_PORT = 8000  # docs/architecture.md: the image listens on 0.0.0.0:8000


def pod_spec(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's pod spec."""
    spec: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def pod_labels(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, str]:
    """The labels the Deployment gives its pods."""
    labels: dict[str, str] = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels selector matches a label set."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probes_hit_the_service_paths_on_the_container_port(scenario: str) -> None:
    """Liveness -> /livez, readiness and startup -> /readyz, all on the named port the service listens on."""
    docs = render_scenario(scenario)
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": CONTAINER_PORT, "grpc": 8001}  # gRPC: tests/deploy/test_helm_grpc.py
    assert c["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert ports[c[probe]["httpGet"]["port"]] == CONTAINER_PORT
    env = env_config(docs)
    assert env["CATDOG_HOST"] == "0.0.0.0"
    assert env["CATDOG_PORT"] == str(CONTAINER_PORT)
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "too short for loading + warm-up"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_pod_runs_locked_down(scenario: str) -> None:
    """Non-root UID 10001, read-only root with a writable /tmp, no escalation, no capabilities, seccomp."""
    docs = render_scenario(scenario)
    spec = pod_spec(docs)
    c = container(docs)
    sc = c["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    tmp = next(m for m in c["volumeMounts"] if m["mountPath"] == "/tmp")
    volume = next(v for v in spec["volumes"] if v["name"] == tmp["name"])
    assert "emptyDir" in volume
    assert spec["automountServiceAccountToken"] is False
    assert c["resources"]["requests"]["cpu"]
    assert c["resources"]["limits"]["memory"]


@pytest.mark.parametrize(("kube_version", "action"), [(OLDEST_KUBE, "exec"), (NEWEST_KUBE, "sleep")])
def test_grace_period_outlasts_prestop_and_drain(kube_version: str, action: str) -> None:
    """preStop sleeps, then the service drains for CATDOG_DRAIN_TIMEOUT_S; the grace period covers both."""
    docs = render_scenario("default", kube_version)
    pre_stop = container(docs)["lifecycle"]["preStop"]
    assert list(pre_stop) == [action]
    sleep_s = int(pre_stop["sleep"]["seconds"] if action == "sleep" else pre_stop["exec"]["command"][-1])
    assert sleep_s > 0
    drain_s = float(env_config(docs)["CATDOG_DRAIN_TIMEOUT_S"])
    assert drain_s == 20
    assert pod_spec(docs)["terminationGracePeriodSeconds"] > sleep_s + drain_s


def test_grace_period_follows_the_drain_setting() -> None:
    """Raising the drain timeout raises the grace period with it."""
    docs = render({"config": {"drain_timeout_s": 60}})
    assert env_config(docs)["CATDOG_DRAIN_TIMEOUT_S"] == "60"
    assert pod_spec(docs)["terminationGracePeriodSeconds"] == 5 + 60 + 5


def test_pods_spread_across_nodes_by_default() -> None:
    """Soft anti-affinity and topology spread over hostnames, both selecting this release's pods."""
    docs = render_scenario("default")
    spec = pod_spec(docs)
    labels = pod_labels(docs)
    term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects(term["podAffinityTerm"]["labelSelector"]["matchLabels"], labels)
    spread = {t["topologyKey"]: t for t in spec["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in spread
    assert selects(spread["kubernetes.io/hostname"]["labelSelector"]["matchLabels"], labels)


def test_config_change_rolls_the_pods() -> None:
    """The pod template's checksum annotation follows the settings ConfigMap and nothing else."""

    def checksum(values: dict[str, Any]) -> str:
        annotations = one(render(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        value: str = annotations["checksum/config"]
        return value

    base = checksum({})
    assert len(base) == 64
    assert checksum({"replicaCount": 5}) == base
    assert checksum({"config": {"log_level": "debug"}}) != base


def test_settings_become_catdog_env_vars() -> None:
    """Set values become CATDOG_* strings (whole numbers stay whole); null leaves the service default."""
    env = env_config(render_scenario("everything"))
    assert env["CATDOG_MAX_UPLOAD_BYTES"] == "10485760"
    assert env["CATDOG_BATCH_MAX_SIZE"] == "8"
    assert env["CATDOG_BATCH_MAX_WAIT_MS"] == "2.5"
    assert env["CATDOG_GRAFANA_URL"] == "https://grafana.example.com"
    assert env["CATDOG_PROVIDERS"] == "auto"
    assert "CATDOG_QUEUE_MAX" not in env
    assert "CATDOG_MAX_IMAGE_PIXELS" not in env
    extra = container(render_scenario("everything"))["env"]
    assert {"name": "OMP_NUM_THREADS", "value": "1"} in extra


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_catdog_env_var_is_a_service_setting(scenario: str) -> None:
    """A misspelt key would be ignored by the service (extra="ignore"): the chart may only set real settings, with
    values the service's own Settings accepts."""
    from service.settings import Settings

    env = {k: v for k, v in env_config(render_scenario(scenario)).items() if k.startswith("CATDOG_")}
    fields = {f"CATDOG_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    Settings(**{key.removeprefix("CATDOG_").lower(): value for key, value in env.items()})


def test_default_is_cpu_only() -> None:
    """Without gpu.enabled: CPU image, no GPU request, no GPU node selector or toleration."""
    docs = render_scenario("default")
    c = container(docs)
    spec = pod_spec(docs)
    assert not c["image"].endswith("-gpu")
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    assert "nodeSelector" not in spec
    assert "tolerations" not in spec
    assert "runtimeClassName" not in spec


def test_gpu_values_schedule_on_nvidia_nodes_and_force_cuda() -> None:
    """values-gpu.yaml: -gpu image, one nvidia.com/gpu, the node label, the taint toleration, CUDA or fail."""
    docs = render_scenario("gpu")
    c = container(docs)
    spec = pod_spec(docs)
    assert c["image"] == "ghcr.io/catdog/catdog:0.1.0-gpu"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
    assert spec["runtimeClassName"] == "nvidia"
    env = env_config(docs)
    assert env["CATDOG_PROVIDERS"] == "cuda"
    assert env["CUDA_CACHE_PATH"].startswith("/tmp/")


def test_gpu_node_selector_is_user_overridable() -> None:
    """A cloud's own GPU label replaces the default one; user tolerations and selectors are kept."""
    docs = render(
        {
            "gpu": {
                "enabled": True,
                "count": 2,
                "nodeSelector": {"nvidia.com/gpu.present": None, "cloud.google.com/gke-accelerator": "nvidia-l4"},
            },
            "nodeSelector": {"pool": "inference"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
            "image": {"tag": "1.2.3"},
        }
    )
    spec = pod_spec(docs)
    assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4", "pool": "inference"}
    assert [t["key"] for t in spec["tolerations"]] == ["dedicated", "nvidia.com/gpu"]
    assert container(docs)["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert container(docs)["image"].endswith(":1.2.3-gpu")


@pytest.mark.parametrize("scenario", ["default", "gpu", "everything"])
def test_hpa_targets_the_deployment(scenario: str) -> None:
    """autoscaling/v2 HPA scaling this Deployment on CPU, which then leaves replicas to the HPA."""
    docs = render_scenario(scenario)
    hpa = one(docs, "HorizontalPodAutoscaler")
    deployment = one(docs, "Deployment")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert "replicas" not in deployment["spec"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    resources = [m["resource"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert resources[0]["name"] == "cpu"
    assert resources[0]["target"]["type"] == "Utilization"


def test_hpa_custom_metric_matches_the_adapter_rule() -> None:
    """The optional Pods metric is the one deploy/helm/prometheus-adapter-values.yaml exposes per pod."""
    hpa = one(render_scenario("everything"), "HorizontalPodAutoscaler")
    pods = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods[0]["metric"]["name"] == "catdog_requests_in_flight"
    assert pods[0]["target"]["type"] == "AverageValue"
    adapter = yaml.safe_load((CHART.parent / "prometheus-adapter-values.yaml").read_text())
    rules = adapter["rules"]["custom"]
    exposed = {r["name"]["as"]: r for r in rules}
    assert "catdog_requests_in_flight" in exposed
    rule = exposed["catdog_requests_in_flight"]
    assert "catdog_requests_in_flight" in rule["seriesQuery"]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}


def test_kind_values_fit_a_laptop_cluster() -> None:
    """values-kind.yaml: the locally loaded image, one replica, no HPA/PDB/Ingress."""
    docs = render_scenario("kind")
    c = container(docs)
    assert c["image"] == "catdog:dev"
    assert c["imagePullPolicy"] == "Never"
    assert one(docs, "Deployment")["spec"]["replicas"] == 1
    for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress"):
        assert by_kind(docs, kind) == []


@pytest.mark.parametrize("scenario", ["default", "gpu", "everything"])
def test_pdb_and_service_select_the_pods(scenario: str) -> None:
    """The PDB and the Service select exactly this release's pods; the Service targets the named port."""
    docs = render_scenario(scenario)
    labels = pod_labels(docs)
    pdb = one(docs, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], labels)
    assert pdb["spec"]["maxUnavailable"] == 1
    service = one(docs, "Service")
    assert selects(service["spec"]["selector"], labels)
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_ingress_routes_the_prefix_and_matches_the_upload_limit() -> None:
    """Ingress path == CATDOG_ROOT_PATH, backend == the Service's port, body size >= the upload limit."""
    docs = render_scenario("everything")
    ingress = one(docs, "Ingress")
    service = one(docs, "Service")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"secretName": "catdog-tls", "hosts": ["catdog.example.com"]}]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "catdog.example.com"
    path = rule["http"]["paths"][0]
    assert path["path"] == "/catdog"
    assert path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {"name": service["metadata"]["name"], "port": {"name": "http"}}
    assert env_config(docs)["CATDOG_ROOT_PATH"] == "/catdog"
    body = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body == "11m"
    assert int(body.removesuffix("m")) * 1024 * 1024 >= int(env_config(docs)["CATDOG_MAX_UPLOAD_BYTES"])


def test_ingress_body_size_follows_the_upload_limit_and_user_wins() -> None:
    """A 25 MB limit gives 25m (+1m); an explicit annotation is kept; "/" sets no root path."""
    docs = render({"ingress": {"enabled": True, "path": "/"}, "config": {"max_upload_bytes": 25_000_000}})
    ingress = one(docs, "Ingress")
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"] == "25m"
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/"
    assert "CATDOG_ROOT_PATH" not in env_config(docs)
    own = {"nginx.ingress.kubernetes.io/proxy-body-size": "100m", "a": "b"}
    ingress = one(render({"ingress": {"enabled": True, "annotations": own}}), "Ingress")
    assert ingress["metadata"]["annotations"] == own


def test_service_monitor_scrapes_the_metrics_path() -> None:
    """ServiceMonitor selects the Service by its labels, scrapes its named port at /metrics."""
    docs = render_scenario("everything")
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["catdog"]
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    annotations = one(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(CONTAINER_PORT)


def test_network_policy_admits_only_the_service_ports() -> None:
    """NetworkPolicy selects the pods and opens the HTTP and gRPC ports to the configured peers only."""
    docs = render_scenario("everything")
    policy = one(docs, "NetworkPolicy")
    assert selects(policy["spec"]["podSelector"]["matchLabels"], pod_labels(docs))
    rule = policy["spec"]["ingress"][0]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}, {"port": "grpc", "protocol": "TCP"}]
    assert rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}


def test_dashboard_configmap_is_the_compose_dashboard() -> None:
    """One source of truth: the sidecar-labelled ConfigMap carries deploy/compose's dashboard file verbatim."""
    maps = [d for d in by_kind(render_scenario("default"), "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]
    assert len(maps) == 1
    dashboard = maps[0]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    text = dashboard["data"]["catdog.json"]
    compose_text = COMPOSE_DASHBOARD.read_text()
    assert json.loads(text) == json.loads(compose_text)
    assert text.strip() == compose_text.strip()
    assert len(text.encode()) < 900 * 1024, "a ConfigMap (and Helm's release record) must stay well under 1 MiB"
    link = CHART / "dashboards" / "catdog.json"
    assert link.is_symlink()
    assert link.resolve() == COMPOSE_DASHBOARD.resolve()


def test_helm_test_pod_checks_readiness_through_the_service() -> None:
    """`helm test` GETs /readyz through the Service name and port."""
    docs = render_scenario("default")
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    url = pod["spec"]["containers"][0]["command"][-1]
    assert url == f"http://{FULLNAME}:{one(docs, 'Service')['spec']['ports'][0]['port']}/readyz"
    service_selector = one(docs, "Service")["spec"]["selector"]
    assert not selects(service_selector, pod["metadata"]["labels"]), "the test pod must not join the Service"


def test_notes_tell_how_to_reach_the_service() -> None:
    """NOTES.txt: a port-forward without ingress, the ingress URL with it."""
    text = notes()
    assert f"port-forward svc/{FULLNAME} 8080:80" in text
    assert "/predict/pretrained" in text
    ingress_text = notes({"ingress": {"enabled": True, "path": "/catdog", "hosts": [{"host": "cd.example.org"}]}})
    assert "http://cd.example.org/catdog/predict/pretrained" in ingress_text
