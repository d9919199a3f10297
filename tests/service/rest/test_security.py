"""Security headers, error bodies without internals, /docs and /metrics switched off or moved, and uploads that
never touch the disk."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.rest.middleware import RequestContextMiddleware
from service.rest.security import API_POLICY, PAGE_POLICY
from tests.support.hostile import encode, noise
from tests.support.server import ServiceProcess

COMMON = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cross-origin-opener-policy": "same-origin",
}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/livez", 200),
        ("GET", "/readyz", 200),
        ("GET", "/v1/models", 200),
        ("GET", "/v1/models/nope", 404),
        ("GET", "/no/such/path", 404),
        ("POST", "/predict/pretrained", 422),
        ("GET", "/metrics", 200),
        ("GET", "/openapi.json", 200),
    ],
)
def test_api_responses_carry_security_headers_and_no_store(
    service: ServiceProcess, method: str, path: str, status: int
) -> None:
    response = service.client.request(method, path)
    assert response.status_code == status
    for name, value in COMMON.items():
        assert response.headers[name] == value, name
    assert response.headers["content-security-policy"] == API_POLICY
    assert response.headers["cache-control"] == "no-store"
    assert "server" not in response.headers


def test_web_page_has_the_strict_policy(service: ServiceProcess) -> None:
    response = service.client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    for directive in PAGE_POLICY.split("; "):
        assert directive in policy
    assert "unsafe-inline" not in policy
    for name, value in COMMON.items():
        assert response.headers[name] == value, name
    assert len(response.headers.get_list("content-security-policy")) == 1
    # Every asset the page loads is same-origin (the policy's 'self').
    for asset in re.findall(r'(?:src|href)="([^"]+)"', response.text):
        assert not asset.startswith(("http:", "https:", "//")) or "rel=" in asset, asset


def test_swagger_ui_gets_its_own_policy_with_the_inline_script_hashed(service: ServiceProcess) -> None:
    response = service.client.get("/docs")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    assert inline
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "script-src 'self' 'sha256-" in policy
    assert "http" not in policy  # Swagger UI's assets come from this service, not a CDN: /docs works offline
    for asset in re.findall(r'(?:src|href)="([^"]+)"', response.text):
        assert asset.startswith("/docs/assets/"), asset
        assert service.client.get(asset).status_code == 200, asset
    assert "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert response.headers["x-frame-options"] == "DENY"


def test_docs_and_metrics_can_be_moved(tiny_repository: Path) -> None:
    env = {
        "CATDOG_MODEL_DIR": str(tiny_repository),
        "CATDOG_DOCS_PATH": "/api/docs",
        "CATDOG_METRICS_PATH": "/internal/metrics",
    }
    with ServiceProcess(env) as svc:
        assert svc.client.get("/docs").status_code == 404
        assert svc.client.get("/metrics").status_code == 404
        docs = svc.client.get("/api/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        assert "sha256-" in docs.headers["content-security-policy"]
        assert "catdog_model_ready" in svc.client.get("/internal/metrics").text
        assert 'href="api/docs"' in svc.client.get("/").text


def test_docs_and_metrics_can_be_disabled(tiny_repository: Path) -> None:
    env = {"CATDOG_MODEL_DIR": str(tiny_repository), "CATDOG_DOCS_ENABLED": "false", "CATDOG_METRICS_ENABLED": "false"}
    with ServiceProcess(env) as svc:
        for path in ("/docs", "/openapi.json", "/metrics", "/docs/oauth2-redirect"):
            response = svc.client.get(path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        assert svc.client.get("/readyz").status_code == 200
        assert 'href="docs"' not in svc.client.get("/").text


def test_uploads_never_touch_the_disk(tiny_repository: Path, tmp_path: Path) -> None:
    spool = tmp_path / "tmp"
    spool.mkdir()
    big = encode(noise((1400, 1400)), "PNG")  # ~5.6 MB: Starlette's form parser would spool this to TMPDIR
    assert len(big) > 5_000_000
    env = {"CATDOG_MODEL_DIR": str(tiny_repository), "TMPDIR": str(spool), "TEMP": str(spool), "TMP": str(spool)}
    with ServiceProcess(env) as svc:
        before = sorted(spool.iterdir())  # whatever the interpreter's environment drops at start-up
        for _ in range(3):
            response = svc.client.post("/predict/pretrained", files={"file": ("big.png", big, "image/png")})
            assert response.status_code == 200, response.text
            response = svc.client.post("/predict/pretrained", content=big, headers={"content-type": "image/png"})
            assert response.status_code == 200, response.text
        assert sorted(spool.iterdir()) == before
        assert svc.proc is not None
        fds = Path(f"/proc/{svc.proc.pid}/fd")
        if fds.exists():
            targets = [str(p.readlink()) for p in fds.iterdir() if p.is_symlink()]
            assert not [t for t in targets if t.startswith(str(spool)) or "(deleted)" in t], targets


def test_unhandled_exception_is_a_json_500_without_internals() -> None:
    app = FastAPI()

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret detail at /srv/catdog/service/thing.py line 12")

    app.add_middleware(RequestContextMiddleware)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"x-request-id": "abc-123"})
    assert response.status_code == 500
    assert response.json() == {
        "error": {
            "code": "internal_error",
            "message": "internal error; see the service log for this request id",
            "request_id": "abc-123",
        }
    }
    assert response.headers["x-request-id"] == "abc-123"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
