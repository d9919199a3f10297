"""Every route of the HTTP contract, against the real service process over the tiny colour models."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.images import BLUE, RED, encode, solid
from tests.support.server import ServiceProcess

PREDICT_PATHS = ["/predict/pretrained", "/predict/scratch", "/v1/models/pretrained/predict"]
FORMATS = {
    "JPEG": ("image/jpeg", {}),
    "PNG": ("image/png", {}),
    "WEBP": ("image/webp", {}),
    "BMP": ("image/bmp", {}),
    "GIF": ("image/gif", {}),
    "TIFF": ("image/tiff", {}),
}


def test_livez(service: ServiceProcess) -> None:
    response = service.client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "alive"}


def test_readyz_lists_models(service: ServiceProcess) -> None:
    body = service.client.get("/readyz").json()
    assert body["ready"] is True
    assert body["models"] == {"pretrained": "ready", "scratch": "ready"}


@pytest.mark.parametrize("path", PREDICT_PATHS)
def test_predict_multipart(service: ServiceProcess, path: str) -> None:
    response = service.client.post(path, files={"file": ("red.png", encode(solid(RED), "PNG"), "image/png")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == "cat"
    assert body["model"] in path
    assert body["filename"] == "red.png"
    assert set(body["probabilities"]) >= {"cat", "dog"}
    assert body["confidence"] == pytest.approx(max(body["probabilities"].values()))
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert body["request_id"] == response.headers["x-request-id"]
    assert (body["width"], body["height"]) == (64, 48)


def test_predict_raw_body(service: ServiceProcess) -> None:
    response = service.client.post(
        "/predict/scratch", content=encode(solid(BLUE), "JPEG"), headers={"content-type": "image/jpeg"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["label"] == "dog"
    assert response.json()["model_version"] == "0.1.0"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format(service: ServiceProcess, fmt: str) -> None:
    content_type, options = FORMATS[fmt]
    for colour, label in ((RED, "cat"), (BLUE, "dog")):
        data = encode(solid(colour), fmt, **options)
        response = service.client.post("/predict/pretrained", files={"file": (f"x.{fmt}", data, content_type)})
        assert response.status_code == 200, (fmt, response.text)
        assert response.json()["label"] == label, fmt


def test_real_photos_are_accepted(service: ServiceProcess, photos: dict[str, Path]) -> None:
    for name in ("cat-cat.webp", "dog-dog.jpg", "cat-skimage-chelsea.png", "dog-cifar10-12-5.png"):
        response = service.client.post("/predict/scratch", files={"file": (name, photos[name].read_bytes())})
        assert response.status_code == 200, (name, response.text)


def test_several_files_answer_in_order(service: ServiceProcess) -> None:
    colours = [RED, BLUE, BLUE, RED]
    files = [("file", (f"{i}.png", encode(solid(c), "PNG"), "image/png")) for i, c in enumerate(colours)]
    response = service.client.post("/v1/models/scratch/predict", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["label"] for p in body["predictions"]] == ["cat", "dog", "dog", "cat"]
    assert [p["filename"] for p in body["predictions"]] == ["0.png", "1.png", "2.png", "3.png"]
    assert body["model"] == "scratch"


def test_request_id_round_trip(service: ServiceProcess) -> None:
    response = service.client.post(
        "/predict/pretrained",
        files={"file": ("a.png", encode(solid(), "PNG"))},
        headers={"X-Request-ID": "trace-abc-123"},
    )
    assert response.headers["x-request-id"] == "trace-abc-123"
    assert response.json()["request_id"] == "trace-abc-123"
    # An unusable id (too long, odd characters) is replaced, never echoed.
    response = service.client.get("/livez", headers={"X-Request-ID": "x" * 300})
    assert len(response.headers["x-request-id"]) == 32


def test_models_metadata(service: ServiceProcess) -> None:
    models = {m["name"]: m for m in service.client.get("/v1/models").json()["models"]}
    assert set(models) == {"pretrained", "scratch"}
    scratch = service.client.get("/v1/models/scratch").json()
    assert scratch == models["scratch"]
    assert scratch["labels"] == ["cat", "dog"]
    assert scratch["input"] == {"name": "input", "height": 48, "width": 40}
    assert scratch["provider"] == "CPUExecutionProvider"
    assert len(scratch["sha256"]) == 64
    assert scratch["preprocessing"]["mean"] == [127.5, 127.5, 127.5]
    assert models["pretrained"]["labels"] == ["cat", "dog", "other"]


def test_version(service: ServiceProcess) -> None:
    body = service.client.get("/version").json()
    assert body["models"] == {"pretrained": "1.0.0", "scratch": "0.1.0"}
    assert body["providers"] == {"pretrained": "CPUExecutionProvider", "scratch": "CPUExecutionProvider"}
    assert body["onnxruntime"].count(".") >= 1
    assert body["version"]


def test_openapi_documents_the_image_upload(service: ServiceProcess) -> None:
    assert service.client.get("/docs").status_code == 200
    spec = service.client.get("/openapi.json").json()
    body = spec["paths"]["/predict/pretrained"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["file"]["format"] == "binary"
    assert "/v1/models/{name}/predict" in spec["paths"]


def test_unknown_path_uses_the_error_body(service: ServiceProcess) -> None:
    response = service.client.get("/no/such/path")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
