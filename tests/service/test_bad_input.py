"""Bad input gets a clear 4xx with the JSON error body, is counted, and changes nothing for the next client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.images import RED, encode, png_declaring, solid
from tests.support.server import ServiceProcess, assert_still_serving

JPEG = encode(solid(RED, (256, 256)), "JPEG")
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

# name -> (request kwargs, expected status, expected error code)
CASES: dict[str, tuple[dict[str, Any], int, str]] = {
    "empty raw body": ({"content": b"", "headers": {"content-type": "image/jpeg"}}, 422, "missing_file"),
    "empty file part": ({"files": {"file": ("a.jpg", b"", "image/jpeg")}}, 400, "empty_input"),
    "missing field": ({"files": {"image": ("a.jpg", JPEG, "image/jpeg")}}, 422, "missing_file"),
    "text named .jpg": (
        {"files": {"file": ("a.jpg", b"hello, not a picture\n", "image/jpeg")}},
        415,
        "unsupported_media_type",
    ),
    "truncated jpeg": ({"files": {"file": ("a.jpg", JPEG[: len(JPEG) // 3], "image/jpeg")}}, 400, "invalid_image"),
    "svg": ({"files": {"file": ("a.svg", SVG, "image/svg+xml")}}, 415, "unsupported_media_type"),
    "pdf named .jpg": ({"files": {"file": ("a.jpg", PDF, "image/jpeg")}}, 415, "unsupported_media_type"),
    "huge declared size": (
        {"files": {"file": ("bomb.png", png_declaring(100_000, 100_000), "image/png")}},
        413,
        "too_many_pixels",
    ),
    "over the byte limit": (
        {"files": {"file": ("big.bin", b"\xff\xd8\xff" + b"\0" * 300_000, "image/jpeg")}},
        413,
        "payload_too_large",
    ),
    "json body": ({"json": {"image": "cat.jpg"}}, 415, "unsupported_media_type"),
}


@pytest.fixture(scope="module")
def strict_service(tiny_repository: Path) -> Iterator[ServiceProcess]:
    """A service with small limits so the limit cases stay small."""
    env = {
        "CATDOG_MODEL_DIR": str(tiny_repository),
        "CATDOG_MAX_UPLOAD_BYTES": "200000",
        "CATDOG_MAX_IMAGE_PIXELS": "4000000",
    }
    with ServiceProcess(env) as svc:
        yield svc


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_refused_clearly(strict_service: ServiceProcess, case: str) -> None:
    kwargs, status, code = CASES[case]
    response = strict_service.client.post("/predict/pretrained", **kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text and "/work" not in response.text
    assert_still_serving(strict_service)


def test_unknown_model(strict_service: ServiceProcess) -> None:
    response = strict_service.client.post("/v1/models/horse/predict", files={"file": ("a.jpg", JPEG)})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert strict_service.client.get("/v1/models/horse").status_code == 404
    assert_still_serving(strict_service)


def test_too_many_files(tiny_repository: Path) -> None:
    env = {"CATDOG_MODEL_DIR": str(tiny_repository), "CATDOG_MAX_FILES_PER_REQUEST": "2"}
    with ServiceProcess(env) as svc:
        files = [("file", (f"{i}.jpg", JPEG, "image/jpeg")) for i in range(3)]
        response = svc.client.post("/predict/scratch", files=files)
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "too_many_files"


def test_rejections_are_counted_by_reason(strict_service: ServiceProcess) -> None:
    strict_service.client.post("/predict/scratch", files={"file": ("a.jpg", b"plain text")})
    metrics = strict_service.client.get("/metrics").text
    assert 'catdog_rejected_requests_total{model="scratch",reason="unsupported_type"}' in metrics
