"""The chart's model-source values: a bucket with a credentials Secret or IRSA, the control mode, the cache on an
emptyDir or a PVC, rendered with Helm's engine and validated strictly."""

from __future__ import annotations

from typing import Any

import pytest

from service.settings import Settings
from tests.deploy.helm_support import CRD_KINDS, KUBE_VERSIONS, container, env_config, kube_validate, one, render

BUCKET: dict[str, Any] = {
    "models": {
        "source": "s3://ml-models/catdog/prod",
        "control": "poll",
        "pollSeconds": 30,
        "maxBytes": 1073741824,
        "s3": {"credentialsSecret": "catdog-s3", "endpointUrl": "https://minio.storage:9000", "region": "eu-west-1"},
        "cache": {"type": "pvc", "existingClaim": "catdog-model-cache"},
    }
}


def test_defaults_keep_todays_behaviour() -> None:
    docs = render()
    env = env_config(docs)
    assert env["CATDOG_MODEL_CONTROL"] == "none"
    assert "CATDOG_MODEL_URL" not in env
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"] == {"name": "model-cache", "emptyDir": {"sizeLimit": "2Gi"}}


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_a_bucket_with_a_secret_and_a_pvc_cache(kube_version: str) -> None:
    docs = render(BUCKET, kube_version)
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CRD_KINDS:
            kube_validate(doc, kube_version)
    env = env_config(docs)
    assert env["CATDOG_MODEL_URL"] == "s3://ml-models/catdog/prod"
    assert env["CATDOG_MODEL_POLL_S"] == "30" and env["CATDOG_MODEL_MAX_BYTES"] == "1073741824"
    assert env["AWS_ENDPOINT_URL"] == "https://minio.storage:9000" and env["AWS_REGION"] == "eu-west-1"
    settings = Settings(**{k.removeprefix("CATDOG_").lower(): v for k, v in env.items() if k.startswith("CATDOG_")})
    assert settings.model_location == "s3://ml-models/catdog/prod" and settings.model_control == "poll"
    main = container(docs)
    assert {"secretRef": {"name": "catdog-s3"}} in main["envFrom"]
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert mounts["model-cache"] == str(settings.model_cache_dir)
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": "catdog-model-cache"}


def test_irsa_needs_only_the_service_account_annotation() -> None:
    role = "arn:aws:iam::123456789012:role/catdog-models"
    values = {
        "models": {"source": "s3://ml-models/catdog", "control": "poll"},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": role}},
    }
    docs = render(values)
    assert one(docs, "ServiceAccount")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role
    assert all("secretRef" not in source for source in container(docs)["envFrom"])  # boto3's chain: web identity


@pytest.mark.parametrize(
    "models",
    [{"control": "sometimes"}, {"source": "ftp://x/y"}, {"cache": {"type": "hostPath"}}, {"pollSeconds": 0}],
)
def test_schema_refuses_bad_model_values(models: dict[str, Any]) -> None:
    with pytest.raises(Exception, match=r"models|schema|values"):
        render({"models": models})


def test_a_pvc_cache_needs_its_claim() -> None:
    with pytest.raises(Exception, match="existingClaim"):
        render({"models": {"cache": {"type": "pvc"}}})
