"""Render the catdog chart offline through Helm's own engine (helm-python-sdk) and parse what it produces."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import yaml
from helm_python import _native
from kubernetes_validate import utils as kv_utils

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "deploy" / "helm" / "catdog"
COMPOSE_DASHBOARD = REPO_ROOT / "deploy" / "compose" / "grafana" / "dashboards" / "catdog.json"
RELEASE = "rel"
NAMESPACE = "catdog"
FULLNAME = f"{RELEASE}-catdog"

# Chart.yaml's kubeVersion floor, the first release with the native preStop sleep action, and the newest
# release kubernetes-validate has schemas for.
OLDEST_KUBE = "1.25.0"
NEWEST_KUBE = max(set(kv_utils.all_versions()), key=lambda v: tuple(int(p) for p in v.split(".")))
KUBE_VERSIONS = (OLDEST_KUBE, "1.29.0", "1.30.0", NEWEST_KUBE)

# Kinds from CRDs that kubernetes-validate has no schema for: prometheus-operator's, KEDA's (checked against
# their own CRDs in tests/deploy/test_helm_keda.py) and cert-manager's.
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("http.keda.sh/v1alpha1", "HTTPScaledObject"),
    ("cert-manager.io/v1", "Certificate"),
}

EVERYTHING: dict[str, Any] = {
    "ingress": {
        "enabled": True,
        "className": "nginx",
        "path": "/catdog",
        "hosts": [{"host": "catdog.example.com"}],
        "tls": [{"secretName": "catdog-tls", "hosts": ["catdog.example.com"]}],
    },
    "autoscaling": {"enabled": True, "customMetric": {"enabled": True}},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
    "networkPolicy": {
        "enabled": True,
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
    },
    "config": {"grafana_url": "https://grafana.example.com", "batch_max_size": 8, "batch_max_wait_ms": 2.5},
    "extraEnv": [{"name": "OMP_NUM_THREADS", "value": "1"}],
    "image": {"digest": "sha256:" + "ab" * 32},
    "priorityClassName": "high",
}

helm_python.disable_logging()


def values_file(name: str) -> dict[str, Any]:
    """A values file shipped in the chart directory, parsed."""
    loaded = yaml.safe_load((CHART / name).read_text())
    return loaded if isinstance(loaded, dict) else {}


def scenario_values(scenario: str) -> dict[str, Any]:
    """User values of a named scenario: default, kind, gpu or everything (every optional object on)."""
    if scenario == "default":
        return {}
    if scenario == "kind":
        return values_file("values-kind.yaml")
    if scenario == "gpu":
        return values_file("values-gpu.yaml")
    if scenario == "everything":
        return copy.deepcopy(EVERYTHING)
    if scenario in KEDA_SCENARIOS:
        return copy.deepcopy(KEDA_SCENARIOS[scenario])
    raise ValueError(scenario)


SCENARIOS = ("default", "kind", "gpu", "everything")

# The KEDA autoscaling modes (tests/deploy/test_helm_keda.py): the ScaledObject alone, and scale to zero with every
# option on (HTTP add-on routes for HTTP and gRPC, the ingress through the interceptor, Prometheus authentication).
KEDA_SCENARIOS: dict[str, dict[str, Any]] = {
    "keda": {"autoscaling": {"keda": {"enabled": True}}},
    "keda-scale-to-zero": {
        "ingress": copy.deepcopy(EVERYTHING["ingress"]),
        "metrics": copy.deepcopy(EVERYTHING["metrics"]),
        "networkPolicy": copy.deepcopy(EVERYTHING["networkPolicy"]),
        "autoscaling": {
            "minReplicas": 1,
            "keda": {
                "enabled": True,
                "signals": {"queueWait": {"enabled": True}},
                "prometheus": {
                    "authentication": {"enabled": True, "secretName": "prometheus-token"},
                    "extraMetadata": {"unsafeSsl": "false"},
                },
                "scaleToZero": {"enabled": True, "grpcHosts": ["grpc.catdog.example.com"]},
            },
        },
    },
}


class _UniqueKeyLoader(yaml.SafeLoader):
    """A YAML loader that refuses duplicate mapping keys (Kubernetes would silently keep one of them)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(k, deep=deep) for k, _ in node.value]
        dupes = {k for k in keys if keys.count(k) > 1}
        if dupes:
            problem = f"duplicate keys {sorted(dupes)}"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark)
        return super().construct_mapping(node, deep=deep)


@cache
def _chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


def render_raw(values: dict[str, Any] | None = None, kube_version: str | None = None) -> dict[str, str]:
    """Template path -> rendered text, as `helm template --kube-version` would give it.

    Chart.render does not expose kube_version, so the call goes one level down to the same native function
    with the option the Go side already accepts (helm-python-sdk is pinned below 0.3 for this).
    """
    opts: dict[str, Any] = {"name": RELEASE, "namespace": NAMESPACE, "is_install": True}
    if kube_version:
        opts["kube_version"] = "v" + kube_version.removeprefix("v")
    chart = _chart()
    rendered = _native.call_string(
        "helm_render", chart._raw(), json.dumps(values) if values else None, json.dumps(opts)
    )
    result: dict[str, str] = json.loads(rendered)
    return result


def render(values: dict[str, Any] | None = None, kube_version: str | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt excluded), in template order."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render_raw(values, kube_version).items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.load_all(text, Loader=_UniqueKeyLoader):
            if doc:
                docs.append(doc)
    return docs


@cache
def render_scenario(scenario: str, kube_version: str | None = None) -> tuple[dict[str, Any], ...]:
    """Cached render of a named scenario; copy before mutating."""
    return tuple(render(scenario_values(scenario), kube_version))


def notes(values: dict[str, Any] | None = None) -> str:
    """The rendered NOTES.txt."""
    return next(text for path, text in render_raw(values).items() if path.endswith("NOTES.txt"))


def by_kind(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind."""
    return [d for d in docs if d["kind"] == kind]


def one(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of a kind (fails when there are none or several)."""
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, Any]:
    """The catdog container of the Deployment."""
    containers = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "catdog")


def env_config(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, str]:
    """The container's settings: the env ConfigMap the Deployment loads through envFrom."""
    names = [src["configMapRef"]["name"] for src in container(docs)["envFrom"] if "configMapRef" in src]
    maps = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] in names]
    assert len(maps) == 1
    data: dict[str, str] = maps[0]["data"]
    return data


def kube_validate(doc: dict[str, Any], version: str) -> None:
    """kubernetes-validate in strict mode (unknown fields are errors)."""
    kubernetes_validate.validate(doc, version, strict=True)


def known_kube_versions() -> list[str]:
    """Every Kubernetes version kubernetes-validate ships schemas for."""
    return sorted(set(kv_utils.all_versions()), key=lambda v: tuple(int(p) for p in v.split(".")))
