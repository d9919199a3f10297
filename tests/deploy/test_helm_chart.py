"""The chart passes `helm lint --strict` and renders objects valid on every supported Kubernetes."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import helm_python
import pytest
import yaml

from tests.deploy.helm_support import (
    CHART,
    COMPOSE_DASHBOARD,
    CRD_KINDS,
    KUBE_VERSIONS,
    NEWEST_KUBE,
    OLDEST_KUBE,
    REPO_ROOT,
    SCENARIOS,
    known_kube_versions,
    kube_validate,
    render_scenario,
    values_file,
)

VALUES_FILES = (None, "values-kind.yaml", "values-gpu.yaml")


@pytest.mark.parametrize("values_name", VALUES_FILES, ids=lambda v: v or "values.yaml")
@pytest.mark.parametrize("kube_version", [OLDEST_KUBE, NEWEST_KUBE])
def test_lint_strict(values_name: str | None, kube_version: str) -> None:
    """No warning or error from Helm's linter in strict mode (schema validation included)."""
    values = values_file(values_name) if values_name else None
    report = helm_python.lint(CHART, values, strict=True, kube_version="v" + kube_version)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [], report
    assert problems == [], problems


def test_validated_versions_span_what_the_validator_knows() -> None:
    """The oldest version checked is the chart's floor and the newest is the newest with schemas."""
    known = known_kube_versions()
    assert OLDEST_KUBE in known
    assert known[-1] == NEWEST_KUBE
    chart_yaml = (CHART / "Chart.yaml").read_text()
    assert f'kubeVersion: ">={OLDEST_KUBE}-0"' in chart_yaml


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_object_validates_strictly(scenario: str, kube_version: str) -> None:
    """Each rendered object matches the Kubernetes OpenAPI schema of that release, unknown fields refused."""
    docs = render_scenario(scenario, kube_version)
    assert docs
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        kube_validate(doc, kube_version)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_objects_are_labelled_and_named(scenario: str) -> None:
    """Every object carries the standard labels and a DNS-safe name."""
    for doc in render_scenario(scenario):
        meta = doc["metadata"]
        assert len(meta["name"]) <= 63
        assert meta["name"].islower()
        assert meta["labels"]["app.kubernetes.io/instance"] == "rel"
        assert meta["labels"]["helm.sh/chart"].startswith("catdog-")


def test_everything_renders_every_optional_object() -> None:
    """The everything scenario exercises each template."""
    kinds = {d["kind"] for d in render_scenario("everything")}
    assert kinds >= {
        "Deployment",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "Ingress",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "NetworkPolicy",
        "Pod",
    }


def test_packaged_chart_carries_the_dashboard(tmp_path: Path) -> None:
    """`helm package` follows the dashboard symlink, so a pushed chart holds the file, not a dangling link."""
    archive = helm_python.package(CHART, destination=tmp_path)
    with tarfile.open(archive) as tar:
        member = tar.extractfile("catdog/dashboards/catdog.json")
        assert member is not None
        packaged = member.read().decode()
    assert json.loads(packaged) == json.loads(COMPOSE_DASHBOARD.read_text())


def test_docs_show_the_shipped_adapter_rules() -> None:
    """The prometheus-adapter rules quoted in docs/kubernetes.md are those of prometheus-adapter-values.yaml."""
    docs = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    blocks = re.findall(r"```yaml\n(rules:\n.*?)```", docs, flags=re.DOTALL)
    assert len(blocks) == 1
    shipped = yaml.safe_load((CHART.parent / "prometheus-adapter-values.yaml").read_text())["rules"]["custom"]
    assert yaml.safe_load(blocks[0])["rules"]["custom"] == shipped
