"""deploy/kserve/: the InferenceServices validate against KServe's own InferenceService CRD schema (unknown fields
refused, as the API server's strict field validation does), the ServingRuntime's container is a valid Kubernetes
container, and the pieces agree with each other and with the service's settings."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import pytest
import yaml

from service.settings import Settings
from tests.deploy.crd_support import unknown_fields
from tests.deploy.helm_support import NEWEST_KUBE, kube_validate
from tests.support.kserve_reference import reference, sdk_problems
from tests.support.server import REPO_ROOT

KSERVE = REPO_ROOT / "deploy" / "kserve"
ISVCS = ("inferenceservice.yaml", "inferenceservice-grpc.yaml")


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((KSERVE / name).read_text())
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def isvc_schema() -> dict[str, Any] | None:
    """The CRD's v1beta1 schema where ../shared/kserve is beside the checkout; else None (the SDK check still runs)."""
    crd_path = reference("serving.kserve.io_inferenceservices.yaml")
    if crd_path is None:
        return None
    crd = yaml.load(crd_path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # 1.5 MB
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def validate_isvc(doc: dict[str, Any], schema: dict[str, Any] | None) -> None:
    """Against KServe's SDK models always, and against the CRD's own schema where it is here."""
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    if schema is not None:
        # The validator itself, without jsonschema.validate's metaschema check of the whole (huge) CRD schema.
        jsonschema.Draft7Validator(schema).validate(doc)
        unknown = unknown_fields(doc, schema)
        assert not unknown, unknown
    problems = sdk_problems(doc)
    assert not problems, problems


@pytest.mark.parametrize("name", ISVCS)
def test_inferenceservice_matches_the_crd(name: str, isvc_schema: dict[str, Any] | None) -> None:
    validate_isvc(_load(name), isvc_schema)


def test_the_validator_refuses_mistakes(isvc_schema: dict[str, Any] | None) -> None:
    typo = copy.deepcopy(_load("inferenceservice.yaml"))
    typo["spec"]["predictor"]["model"]["protocolVerison"] = "v2"
    with pytest.raises(AssertionError, match="protocolVerison"):
        validate_isvc(typo, isvc_schema)
    wrong_type = copy.deepcopy(_load("inferenceservice.yaml"))
    wrong_type["spec"]["predictor"]["minReplicas"] = "one"
    with pytest.raises((jsonschema.ValidationError, AssertionError), match=r"one|minReplicas"):
        validate_isvc(wrong_type, isvc_schema)
    with pytest.raises(AssertionError, match="protocolVerison"):
        validate_isvc(typo, None)  # the SDK check alone, as where the CRD is not beside the checkout


def test_predictors_speak_v2_through_the_catdog_runtime() -> None:
    runtime = _load("servingruntime.yaml")
    assert runtime["kind"] == "ServingRuntime"
    assert "v2" in runtime["spec"]["protocolVersions"]
    formats = {f["name"] for f in runtime["spec"]["supportedModelFormats"]}
    protocols = {}
    for name in ISVCS:
        model = _load(name)["spec"]["predictor"]["model"]
        assert model["runtime"] == runtime["metadata"]["name"]
        assert model["modelFormat"]["name"] in formats
        protocols[name] = model["protocolVersion"]
    assert protocols == {"inferenceservice.yaml": "v2", "inferenceservice-grpc.yaml": "grpc-v2"}


def test_runtime_container_is_valid_and_wired_to_the_settings() -> None:
    runtime = _load("servingruntime.yaml")
    [c] = runtime["spec"]["containers"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "catdog"}, "spec": {"containers": [c]}}
    kube_validate(pod, NEWEST_KUBE)
    env = {e["name"]: e["value"] for e in c["env"]}
    fields = {f"CATDOG_{name.upper()}" for name in Settings.model_fields}
    assert set(env) <= fields, set(env) - fields
    settings = Settings(**{k.removeprefix("CATDOG_").lower(): v for k, v in env.items()})
    assert [p["containerPort"] for p in c["ports"]] == [settings.port]
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": settings.port}
    grpc_ports = _load("inferenceservice-grpc.yaml")["spec"]["predictor"]["model"]["ports"]
    assert grpc_ports == [{"name": "h2c", "containerPort": settings.grpc_port, "protocol": "TCP"}]
    assert settings.grpc_enabled and settings.grpc_port != settings.port
