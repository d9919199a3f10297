"""The KEDA autoscaling modes: exactly one mode renders, every object is valid (Kubernetes' schemas for 1.25 to the
newest release, KEDA's own CRDs for ScaledObject, TriggerAuthentication and HTTPScaledObject) and means what
docs/kubernetes.md says: catdog's signals as Prometheus triggers, the HPA behavior, scale to zero through the HTTP
add-on's interceptor with the readiness gate after warm-up."""

from __future__ import annotations

import copy
import re
from typing import Any

import helm_python
import jsonschema
import pytest

from service.settings import Settings
from tests.deploy.crd_support import crd_schemas, crd_validate
from tests.deploy.helm_support import (
    CHART,
    FULLNAME,
    KEDA_SCENARIOS,
    NAMESPACE,
    by_kind,
    container,
    known_kube_versions,
    kube_validate,
    notes,
    one,
    render,
    render_scenario,
    scenario_values,
    values_file,
)

KEDA_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication")}
KEDA_KINDS |= {("http.keda.sh/v1alpha1", "HTTPScaledObject")}
# Every release from the chart's floor to the newest kubernetes-validate knows.
ALL_KUBE = tuple(v for v in known_kube_versions() if tuple(map(int, v.split("."))) >= (1, 25))


def keda_values(**keda: Any) -> dict[str, Any]:
    return {"autoscaling": {"keda": {"enabled": True, **keda}}}


def triggers(docs: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ScaledObject's triggers by name."""
    return {t["name"]: t for t in one(docs, "ScaledObject")["spec"]["triggers"]}


@pytest.mark.parametrize("kube_version", ALL_KUBE)
@pytest.mark.parametrize("scenario", KEDA_SCENARIOS)
def test_every_object_validates(scenario: str, kube_version: str) -> None:
    """Kubernetes' own kinds against that release's OpenAPI (strict); KEDA's against KEDA's CRDs (strict)."""
    docs = render_scenario(scenario, kube_version)
    seen = set()
    for doc in docs:
        key = (doc["apiVersion"], doc["kind"])
        if key in KEDA_KINDS:
            crd_validate(doc, crd_schemas())
            seen.add(key)
        elif doc["kind"] != "ServiceMonitor":
            kube_validate(doc, kube_version)
    expected = {("keda.sh/v1alpha1", "ScaledObject")}
    if scenario == "keda-scale-to-zero":
        expected = KEDA_KINDS
    assert seen == expected


@pytest.mark.parametrize("scenario", KEDA_SCENARIOS)
def test_lint_strict(scenario: str) -> None:
    report = helm_python.lint(CHART, scenario_values(scenario), strict=True, kube_version="v1.31.0")
    assert report["errors"] == [], report
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_crd_check_refuses_mistakes() -> None:
    """A typo, a wrong type and a missing required field in a ScaledObject are caught: passing means something."""
    scaled = one(render_scenario("keda"), "ScaledObject")
    typo = copy.deepcopy(scaled)
    typo["spec"]["pollingIntervall"] = 15
    with pytest.raises(AssertionError, match="pollingIntervall"):
        crd_validate(typo, crd_schemas())
    wrong = copy.deepcopy(scaled)
    wrong["spec"]["minReplicaCount"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        crd_validate(wrong, crd_schemas())
    untyped = copy.deepcopy(scaled)
    del untyped["spec"]["triggers"][0]["type"]
    with pytest.raises(jsonschema.ValidationError, match="'type' is a required property"):
        crd_validate(untyped, crd_schemas())


# --- exactly one mode ---------------------------------------------------------------------------------------


def test_exactly_one_autoscaling_mode_renders() -> None:
    modes = {
        "hpa": render(),
        "keda": render(keda_values()),
        "none": render({"autoscaling": {"enabled": False}}),
    }
    counts = {
        mode: (len(by_kind(docs, "HorizontalPodAutoscaler")), len(by_kind(docs, "ScaledObject")))
        for mode, docs in modes.items()
    }
    assert counts == {"hpa": (1, 0), "keda": (0, 1), "none": (0, 0)}
    # Whoever scales owns the replica count; a fixed count only without autoscaling.
    assert "replicas" not in one(modes["keda"], "Deployment")["spec"]
    assert one(modes["none"], "Deployment")["spec"]["replicas"] == 2


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"autoscaling": {"customMetric": {"enabled": True}, "keda": {"enabled": True}}},
            "two autoscaling modes: enable one of them",
        ),
        ({"autoscaling": {"enabled": False, "keda": {"enabled": True}}}, "keda.enabled needs autoscaling.enabled"),
        ({"autoscaling": {"keda": {"scaleToZero": {"enabled": True}}}}, "scaleToZero.enabled needs autoscaling.keda"),
        (
            keda_values(signals={s: {"enabled": False} for s in ("inFlight", "refusals", "queueWait", "cpu")}),
            "enable at least one of",
        ),
        (keda_values(scaleToZero={"enabled": True}, signals={"cpu": {"enabled": True}}), "cpu cannot drive"),
        (keda_values(scaleToZero={"enabled": True}), "the interceptor routes by Host"),
        (keda_values(prometheus={"authentication": {"enabled": True}}), "name the Secret"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 3, "keda": {"enabled": True}}}, "must not exceed"),
    ],
)
def test_inconsistent_modes_fail_the_render(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=re.escape(message)):
        render(values)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        (keda_values(signals={"refusals": {"enabled": True, "target": "-1"}}), "/autoscaling/keda/signals/refusals"),
        (keda_values(pollingInterval=0), "/autoscaling/keda/pollingInterval"),
        (keda_values(prometheus={"serverAddress": "prometheus:9090"}), "/autoscaling/keda/prometheus/serverAddress"),
        (keda_values(prometheus={"authentication": {"modes": "kerberos"}}), "/autoscaling/keda/prometheus"),
        (keda_values(scaleToZero={"conditionWait": "soon"}), "/autoscaling/keda/scaleToZero/conditionWait"),
        (keda_values(scaleToZero={"idle": 0}), "/autoscaling/keda/scaleToZero"),
    ],
)
def test_schema_rejects_wrong_keda_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as err:
        render(values)
    assert where in str(err.value)


# --- what the ScaledObject means ------------------------------------------------------------------------------


def test_scaled_object_scales_the_deployment_on_catdog_signals() -> None:
    docs = render_scenario("keda")
    defaults = values_file("values.yaml")["autoscaling"]
    spec = one(docs, "ScaledObject")["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": FULLNAME}
    assert one(docs, "Deployment")["metadata"]["name"] == FULLNAME
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (defaults["minReplicas"], defaults["maxReplicas"])
    assert spec["pollingInterval"] == defaults["keda"]["pollingInterval"]
    assert "idleReplicaCount" not in spec
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == defaults["keda"]["behavior"]
    found = triggers(docs)
    assert set(found) == {"in-flight", "refusals"}  # the default signals (docs/benchmarks.md)
    selector = f'namespace="{NAMESPACE}",service="{FULLNAME}"'
    for name, trigger in found.items():
        meta = trigger["metadata"]
        assert trigger["type"] == "prometheus" and trigger["metricType"] == "Value"
        assert meta["serverAddress"] == defaults["keda"]["prometheus"]["serverAddress"]
        assert meta["query"].count(selector) >= 1, meta["query"]
        assert meta["query"].endswith("or vector(0)"), "an idle release must read 0, not nothing"
        target = defaults["keda"]["signals"]["inFlight" if name == "in-flight" else "refusals"]["target"]
        assert meta["threshold"] == target
        assert "authenticationRef" not in trigger
    assert "catdog_requests_in_flight" in found["in-flight"]["metadata"]["query"]
    assert "catdog_admission_limit" in found["in-flight"]["metadata"]["query"]
    assert 'reason="overloaded"' in found["refusals"]["metadata"]["query"]
    assert "catdog_admissions_total" in found["refusals"]["metadata"]["query"]


def test_behavior_answers_a_burst_at_once_and_does_not_flap() -> None:
    """Scale-up: no stabilisation window and at least doubling within a 15 s period; scale-down: a window longer than
    a quiet minute and at most half the pods per minute."""
    behavior = one(render_scenario("keda"), "ScaledObject")["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
    up, down = behavior["behavior"]["scaleUp"], behavior["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 0
    assert any(p["type"] == "Percent" and p["value"] >= 100 and p["periodSeconds"] <= 15 for p in up["policies"])
    assert down["stabilizationWindowSeconds"] > 60
    assert all(p["type"] != "Percent" or p["value"] <= 50 for p in down["policies"])


def test_every_signal_and_the_selector_are_configurable() -> None:
    docs = render(
        keda_values(
            signals={"queueWait": {"enabled": True, "target": "0.1"}, "cpu": {"enabled": True, "target": "80"}},
            prometheus={"selector": 'pod=~"x-.*"', "rateWindow": "2m"},
        )
    )
    found = triggers(docs)
    assert set(found) == {"in-flight", "refusals", "queue-wait-p95", "cpu"}
    assert found["queue-wait-p95"]["metadata"]["threshold"] == "0.1"
    assert "catdog_queue_wait_seconds_bucket" in found["queue-wait-p95"]["metadata"]["query"]
    assert found["cpu"] == {"type": "cpu", "name": "cpu", "metricType": "Utilization", "metadata": {"value": "80"}}
    for name in ("in-flight", "refusals", "queue-wait-p95"):
        assert 'pod=~"x-.*"' in found[name]["metadata"]["query"]
    assert "[2m]" in found["refusals"]["metadata"]["query"]
    assert one(docs, "ScaledObject")["metadata"]["annotations"]["catdog.dev/signals"] == (
        "in-flight,refusals,queue-wait-p95,cpu"
    )


def test_trigger_authentication_for_a_prometheus_that_needs_one() -> None:
    docs = render_scenario("keda-scale-to-zero")
    auth = one(docs, "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "bearerToken", "name": "prometheus-token", "key": "token"}]
    for name, trigger in triggers(docs).items():
        if trigger["type"] == "prometheus":
            assert trigger["authenticationRef"] == {"name": auth["metadata"]["name"]}, name
            assert trigger["metadata"]["authModes"] == "bearer"
            assert trigger["metadata"]["unsafeSsl"] == "false"
    basic = render(
        keda_values(
            prometheus={
                "authentication": {
                    "enabled": True,
                    "modes": "basic",
                    "secretName": "prom",
                    "secretKeys": {"bearerToken": None, "username": "user", "password": "pass"},
                }
            }
        )
    )
    refs = one(basic, "TriggerAuthentication")["spec"]["secretTargetRef"]
    assert {(r["parameter"], r["key"]) for r in refs} == {("username", "user"), ("password", "pass")}


# --- scale to zero ------------------------------------------------------------------------------------------


def test_scale_to_zero_idles_at_zero_after_its_own_delay() -> None:
    docs = render_scenario("keda-scale-to-zero")
    zero = values_file("values.yaml")["autoscaling"]["keda"]["scaleToZero"]
    spec = one(docs, "ScaledObject")["spec"]
    assert spec["idleReplicaCount"] == 0 < spec["minReplicaCount"]
    assert spec["cooldownPeriod"] == zero["delaySeconds"]
    # The scale-up and scale-down between 1 and max stay the HPA's (behavior), the delay to zero is separate.
    assert (
        spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        < (zero["delaySeconds"])
    )


def test_scale_to_zero_routes_through_the_interceptor() -> None:
    docs = render_scenario("keda-scale-to-zero")
    values = scenario_values("keda-scale-to-zero")
    addon = values_file("values.yaml")["autoscaling"]["keda"]["scaleToZero"]["httpAddon"]
    http_objects = {d["metadata"]["name"]: d for d in by_kind(docs, "HTTPScaledObject")}
    assert set(http_objects) == {f"{FULLNAME}-http", f"{FULLNAME}-grpc"}
    external = {t["metadata"]["httpScaledObject"]: t for t in triggers(docs).values() if t["type"] == "external-push"}
    assert set(external) == set(http_objects), "each HTTPScaledObject's requests wake the deployment"
    assert {t["metadata"]["scalerAddress"] for t in external.values()} == {addon["scalerAddress"]}
    services = {d["metadata"]["name"]: d for d in by_kind(docs, "Service")}
    own_ports = {p["name"]: p["port"] for p in services[FULLNAME]["spec"]["ports"]}
    for name, obj in http_objects.items():
        # The ScaledObject scales; the add-on must not create a second one for the same Deployment.
        assert obj["metadata"]["annotations"]["httpscaledobject.keda.sh/skip-scaledobject-creation"] == "true"
        ref = obj["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"], ref["service"]) == ("Deployment", FULLNAME, FULLNAME)
        assert ref["port"] == own_ports["grpc" if name.endswith("-grpc") else "http"]
    http = http_objects[f"{FULLNAME}-http"]["spec"]
    assert http["hosts"] == [h["host"] for h in values["ingress"]["hosts"]]
    assert http["pathPrefixes"] == [values["ingress"]["path"]]
    assert http_objects[f"{FULLNAME}-grpc"]["spec"]["hosts"] == ["grpc.catdog.example.com"]
    # The interceptor holds a request longer than a pod takes to start, and waits for answers as long as catdog
    # may take (its own request deadline).
    timeouts = http["timeouts"]
    assert _seconds(timeouts["responseHeader"]) > Settings().request_timeout_s
    assert _seconds(timeouts["conditionWait"]) >= 30
    # The ingress sends traffic to the interceptor through an ExternalName Service in the release's namespace.
    backend = one(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    proxy = services[backend["name"]]
    assert proxy["spec"]["type"] == "ExternalName"
    assert proxy["spec"]["externalName"] == (
        f"{addon['interceptorService']}.{addon['namespace']}.svc.{addon['clusterDomain']}"
    )
    assert backend["port"] == {"number": addon["interceptorPort"]}


def test_the_interceptor_forwards_only_to_warmed_up_pods() -> None:
    """Held requests go to a pod once it is Ready, and /readyz is 200 only after every model is loaded and warmed."""
    c = container(render_scenario("keda-scale-to-zero"))
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"]["httpGet"]["path"] == "/readyz"


def test_ingress_goes_straight_to_the_pods_without_scale_to_zero() -> None:
    docs = render({**keda_values(), "ingress": scenario_values("keda-scale-to-zero")["ingress"]})
    backend = one(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"name": "http"}}
    assert not by_kind(docs, "HTTPScaledObject")


def test_notes_name_the_mode() -> None:
    assert "KEDA" in notes(keda_values())
    assert "scale to zero" in notes(scenario_values("keda-scale-to-zero"))
    assert "HPA" in notes()


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([0-9.]+)(ms|s|m|h)", duration))
