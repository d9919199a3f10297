"""Start-up: readiness waits for warm-up, broken models are reported and skipped, CUDA is never faked."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.images import RED, encode, solid
from tests.support.onnx_models import build_colour_classifier, write_model_dir, write_test_repository
from tests.support.server import REPO_ROOT, ServiceProcess


def test_readiness_is_503_until_warm_up_completes(tmp_path: Path) -> None:
    write_model_dir(tmp_path, "slow", model=build_colour_classifier(extra_matmuls=64))
    env = {"CATDOG_MODEL_DIR": str(tmp_path), "CATDOG_WARMUP_RUNS": "400", "CATDOG_INTRA_OP_THREADS": "1"}
    with ServiceProcess(env).start(wait="live") as svc:
        early = svc.client.get("/readyz")
        assert early.status_code == 503
        assert early.json()["status"] == "loading"
        assert early.json()["models"] == {"slow": "loading"}
        refused = svc.client.post("/v1/models/slow/predict", files={"file": ("a.png", encode(solid(), "PNG"))})
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "not_ready"
        assert refused.headers["retry-after"]
        assert svc.client.get("/livez").status_code == 200
        svc.wait_for("/readyz", timeout=60)
        ok = svc.client.post("/v1/models/slow/predict", files={"file": ("a.png", encode(solid(), "PNG"))})
        assert ok.status_code == 200
        records = svc.logs()
        ready_at = next(i for i, r in enumerate(records) if r.get("event") == "models_loaded")
        first_503 = next(i for i, r in enumerate(records) if r.get("path") == "/readyz" and r.get("status") == 503)
        assert first_503 < ready_at


def _break(root: Path) -> dict[str, str]:
    """Four ways a model folder can be broken, each next to nothing else."""
    write_model_dir(root, "bad-checksum", card_overrides={"onnx": {"file": "model.onnx", "sha256": "0" * 64}})
    corrupt = write_model_dir(root, "corrupt")
    (corrupt / "model.onnx").write_bytes(b"this is not protobuf")
    missing = write_model_dir(root, "missing-onnx")
    (missing / "model.onnx").unlink()
    invalid = write_model_dir(root, "invalid-card")
    card = json.loads((invalid / "model.json").read_text())
    del card["labels"]
    (invalid / "model.json").write_text(json.dumps(card))
    return {"bad-checksum": "sha256", "corrupt": "", "missing-onnx": "missing file", "invalid-card": "labels"}


def test_broken_models_are_reported_and_the_rest_serve(tmp_path: Path) -> None:
    write_test_repository(tmp_path)
    broken = _break(tmp_path)
    with ServiceProcess({"CATDOG_MODEL_DIR": str(tmp_path)}) as svc:
        ready = svc.client.get("/readyz").json()
        assert ready["ready"] is True
        assert set(ready["failed"]) == set(broken)
        for name, hint in broken.items():
            assert hint in ready["failed"][name]
            info = svc.client.get(f"/v1/models/{name}").json()
            assert info["status"] == "failed"
            response = svc.client.post(f"/v1/models/{name}/predict", files={"file": ("a.png", encode(solid(), "PNG"))})
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "not_ready"
        good = svc.client.post("/predict/pretrained", files={"file": ("a.png", encode(solid(RED), "PNG"))})
        assert good.json()["label"] == "cat"
        failures = {r["model"]: r["reason"] for r in svc.logs() if r.get("event") == "model_failed"}
        assert set(failures) == set(broken)
        assert "Traceback" not in svc.output()


def test_require_all_models_keeps_readiness_down(tmp_path: Path) -> None:
    write_test_repository(tmp_path)
    _break(tmp_path)
    env = {"CATDOG_MODEL_DIR": str(tmp_path), "CATDOG_REQUIRE_ALL_MODELS": "true"}
    with ServiceProcess(env).start(wait="live") as svc:
        deadline = time.monotonic() + 30
        while svc.client.get("/readyz").json()["status"] == "loading" and time.monotonic() < deadline:
            time.sleep(0.1)
        response = svc.client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["status"] == "no usable model"


def test_empty_repository_is_not_ready(tmp_path: Path) -> None:
    with ServiceProcess({"CATDOG_MODEL_DIR": str(tmp_path)}).start(wait="live") as svc:
        time.sleep(0.3)
        response = svc.client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["status"] == "no models"


@pytest.mark.skipif(
    "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(), reason="a GPU is present"
)
def test_cuda_without_a_gpu_fails_loudly(tiny_repository: Path) -> None:
    env = {"CATDOG_MODEL_DIR": str(tiny_repository), "CATDOG_PROVIDERS": "cuda"}
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 3
    assert "CATDOG_PROVIDERS=cuda" in result.stderr
    assert "onnxruntime-gpu" in result.stderr
