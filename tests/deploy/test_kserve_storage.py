"""KServe with storageUri: the InferenceService validates against KServe's CRD and SDK, selects the catdog-storage
runtime, and that runtime points catdog at /mnt/models, where the storage initializer puts the bucket's contents.
The last part runs for real: a repository laid out as the initializer leaves it serves through that setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from service.settings import Settings
from tests.deploy.helm_support import NEWEST_KUBE, kube_validate
from tests.deploy.test_kserve import isvc_schema, validate_isvc
from tests.support.oip import red_jpeg
from tests.support.onnx_models import write_version_dir
from tests.support.server import REPO_ROOT, ServiceProcess

KSERVE = REPO_ROOT / "deploy" / "kserve"
__all__ = ["isvc_schema"]  # the CRD fixture, shared with tests/deploy/test_kserve.py


def _load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((KSERVE / name).read_text())
    assert isinstance(doc, dict)
    return doc


def test_storage_uri_inferenceservice_is_valid(isvc_schema: dict[str, Any] | None) -> None:
    isvc = _load("inferenceservice-s3.yaml")
    validate_isvc(isvc, isvc_schema)
    model = isvc["spec"]["predictor"]["model"]
    assert model["storageUri"].startswith("s3://")
    runtime = _load("servingruntime-storage.yaml")
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in {f["name"] for f in runtime["spec"]["supportedModelFormats"]}


def test_the_runtime_serves_mnt_models(tmp_path: Path) -> None:
    [c] = _load("servingruntime-storage.yaml")["spec"]["containers"]
    kube_validate(
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "c"}, "spec": {"containers": [c]}}, NEWEST_KUBE
    )
    env = {e["name"]: e["value"] for e in c["env"]}
    settings = Settings(**{k.removeprefix("CATDOG_").lower(): v for k, v in env.items()})
    assert settings.model_location == "/mnt/models"
    # What the storage initializer leaves in /mnt/models for s3://ml-models/catdog/prod: the prefix's contents.
    mnt = tmp_path / "mnt" / "models"
    write_version_dir(mnt, "pretrained", "1")
    write_version_dir(mnt, "pretrained", "2")
    with ServiceProcess({"CATDOG_MODEL_DIR": str(mnt)}) as svc:
        assert svc.client.get("/v2/health/ready").status_code == 200
        response = svc.client.post("/v1/models/pretrained/predict", files={"file": ("r.jpg", red_jpeg())})
        assert response.json()["model_version"] == "2"
