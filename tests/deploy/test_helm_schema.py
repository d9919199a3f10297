"""values.schema.json and the templates' own checks refuse wrong values at install time, saying where."""

from __future__ import annotations

import json
from typing import Any

import helm_python
import pytest

from tests.deploy.helm_support import CHART, render, values_file

REJECTED: list[tuple[dict[str, Any], str]] = [
    ({"replicaCount": "three"}, "/replicaCount"),
    ({"replicaCount": -1}, "/replicaCount"),
    ({"resources": {"limits": {"cpu": "-1"}}}, "/resources/limits/cpu"),
    ({"resources": {"requests": {"memory": -512}}}, "/resources/requests/memory"),
    ({"resources": {"requests": {"memory": "lots"}}}, "/resources/requests/memory"),
    ({"resources": {"limit": {"cpu": "1"}}}, "/resources"),
    ({"replicas": 3}, "replicas"),
    ({"config": {"providers": "tpu"}}, "/config/providers"),
    ({"config": {"log_format": "xml"}}, "/config/log_format"),
    ({"config": {"max_upload_bytes": 0}}, "/config/max_upload_bytes"),
    ({"config": {"port": 9000}}, "/config/port"),
    ({"config": {"Bad-Key": "x"}}, "Bad-Key"),
    ({"containerPort": 80}, "/containerPort"),
    ({"probes": {"liveness": {"path": "livez"}}}, "/probes/liveness/path"),
    ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    ({"gpu": {"enabled": "yes"}}, "/gpu/enabled"),
    ({"gpu": {"count": 0}}, "/gpu/count"),
    ({"ingress": {"path": "catdog"}}, "/ingress/path"),
    ({"autoscaling": {"maxReplicas": 0}}, "/autoscaling/maxReplicas"),
    ({"autoscaling": {"customMetric": {"targetAverageValue": "-4"}}}, "/autoscaling/customMetric/targetAverageValue"),
]


@pytest.mark.parametrize(("values", "where"), REJECTED, ids=lambda v: json.dumps(v) if isinstance(v, dict) else "")
def test_schema_rejects_wrong_values(values: dict[str, Any], where: str) -> None:
    """Install-time failure naming the offending key."""
    with pytest.raises(helm_python.HelmValuesError) as err:
        render(values)
    message = str(err.value)
    assert "schema" in message
    assert where in message


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"termination": {"gracePeriodSeconds": 20}}, "must exceed termination.preStopSleepSeconds"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}, "must not exceed autoscaling.maxReplicas"),
        ({"podDisruptionBudget": {"minAvailable": 1}}, "only one of maxUnavailable and minAvailable"),
        ({"podDisruptionBudget": {"maxUnavailable": None}}, "set maxUnavailable or minAvailable"),
    ],
)
def test_templates_reject_inconsistent_values(values: dict[str, Any], message: str) -> None:
    """Cross-field rules the schema cannot express fail the render with an explanation."""
    with pytest.raises(helm_python.HelmRenderError, match=message):
        render(values)


@pytest.mark.parametrize(
    "values",
    [
        {"resources": {"requests": {"cpu": "250m", "memory": "1.5Gi"}, "limits": {"cpu": 2, "memory": "2G"}}},
        {"termination": {"gracePeriodSeconds": 60}},
        {"podDisruptionBudget": {"maxUnavailable": None, "minAvailable": "50%"}},
        {"config": {"require_all_models": True, "warmup_runs": 3}},
    ],
)
def test_schema_accepts_reasonable_values(values: dict[str, Any]) -> None:
    """Valid quantities, percentages and settings the chart does not know by name all pass."""
    assert render(values)


@pytest.mark.parametrize("name", ["values.yaml", "values-kind.yaml", "values-gpu.yaml"])
def test_shipped_values_files_pass_the_schema(name: str) -> None:
    """Every values file in the chart satisfies the schema on its own."""
    chart = helm_python.Chart.load(CHART)
    chart.validate_schema(chart.merge_values(values_file(name)))
