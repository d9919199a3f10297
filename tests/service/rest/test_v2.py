"""The Open Inference Protocol over REST (/v2), against the real service process: tritonclient's HTTP client
unchanged, and raw requests for what a client library would never send. Values are compared with /predict and
with ONNX Runtime, not just statuses."""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
import yaml
from tritonclient.utils import InferenceServerException

from tests.support.images import BLUE, encode, png_declaring, solid
from tests.support.kserve_reference import REST_PATHS, reference
from tests.support.oip import (
    BROKEN,
    LABELS,
    onnx_probabilities,
    predict_probabilities,
    random_batch,
    red_jpeg,
)
from tests.support.server import ServiceProcess


@pytest.fixture
def client(oip_service: ServiceProcess) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(f"127.0.0.1:{oip_service.port}")
    yield c
    c.close()


def _images(photos: dict[str, Path]) -> list[bytes]:
    return [photos[name].read_bytes() for name in ("cat-cat.webp", "dog-dog.jpg", "cat-skimage-chelsea.png")]


def assert_oip_still_serving(oip_service: ServiceProcess) -> None:
    """After a refusal, a good /v2 request (a red JPEG: "cat" for the tiny colour models) still succeeds."""
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [_b64(red_jpeg())]}]}
    response = oip_service.client.post("/v2/models/pretrained/infer", json=body)
    assert response.status_code == 200, response.text
    assert {o["name"]: o["data"] for o in response.json()["outputs"]}["label"] == ["cat"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- health and metadata -----------------------------------------------------------------------------------------


def test_health_answers_json_bodies(oip_service: ServiceProcess) -> None:
    live = oip_service.client.get("/v2/health/live")
    ready = oip_service.client.get("/v2/health/ready")
    assert (live.status_code, live.json()) == (200, {"live": True})
    assert (ready.status_code, ready.json()) == (200, {"ready": True})


def test_every_path_of_the_protocols_openapi_is_served(oip_service: ServiceProcess) -> None:
    """KServe's rest_predict_v2.yaml (the specification's list where the file is not beside the checkout): each
    path and method answers 200 here (no redirect, no 404 / 405)."""
    spec = reference("rest_predict_v2.yaml")
    paths = yaml.safe_load(spec.read_text())["paths"] if spec else REST_PATHS
    if spec:
        assert {p: tuple(sorted(set(ops) & {"get", "post"})) for p, ops in paths.items()} == REST_PATHS
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [_b64(red_jpeg())]}]}
    assert len(paths) >= 6
    for template, operations in paths.items():
        path = template.replace("${MODEL_NAME}", "scratch").replace("${MODEL_VERSION}", "0.1.0")
        for method in set(operations) & {"get", "post"}:
            response = oip_service.client.request(method.upper(), path, json=body if method == "post" else None)
            assert response.status_code == 200, (method, path, response.status_code)


def test_server_metadata(oip_service: ServiceProcess) -> None:
    body = oip_service.client.get("/v2").json()
    assert body["name"] == "catdog"
    assert body["version"]
    assert "binary_tensor_data" in body["extensions"]


@pytest.mark.parametrize("path", ["/v2/models/scratch", "/v2/models/scratch/versions/0.1.0"])
def test_model_metadata(oip_service: ServiceProcess, path: str) -> None:
    assert oip_service.client.get(path).json() == {
        "name": "scratch",
        "versions": ["0.1.0"],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1, 1]},
            {"name": "input", "datatype": "FP32", "shape": [-1, 3, 48, 40]},
        ],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
    }


def test_model_ready_and_not(oip_service: ServiceProcess, client: triton.InferenceServerClient) -> None:
    assert oip_service.client.get("/v2/models/pretrained/ready").json() == {"name": "pretrained", "ready": True}
    assert oip_service.client.get("/v2/models/pretrained/versions/1.0.0/ready").status_code == 200
    broken = oip_service.client.get(f"/v2/models/{BROKEN}/ready")
    assert (broken.status_code, broken.json()) == (503, {"name": BROKEN, "ready": False})
    assert oip_service.client.get("/v2/models/nope/ready").status_code == 404
    assert oip_service.client.get("/v2/models/pretrained/versions/9.9.9/ready").status_code == 404
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("pretrained")
    assert not client.is_model_ready(BROKEN)
    metadata = client.get_model_metadata("pretrained")
    assert metadata["versions"] == ["1.0.0"]
    assert [i["name"] for i in metadata["inputs"]] == ["image", "input"]


# --- infer -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_images_match_predict(
    oip_service: ServiceProcess, client: triton.InferenceServerClient, photos: dict[str, Path], binary: bool
) -> None:
    images = _images(photos)
    elements = images if binary else [base64.b64encode(d) for d in images]
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(elements, dtype=np.object_), binary_data=binary)
    outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("probabilities", "label")]
    result = client.infer("scratch", [tensor], outputs=outputs, request_id="req-7")
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32
    assert probabilities.shape == (3, 2)
    expected = [predict_probabilities(oip_service, "scratch", d) for d in images]
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
    assert labels == [LABELS["scratch"][int(np.argmax(row))] for row in expected]
    assert result.get_response()["id"] == "req-7"


def test_json_base64_with_and_without_content_type(oip_service: ServiceProcess) -> None:
    data = encode(solid(BLUE), "PNG")
    expected = predict_probabilities(oip_service, "pretrained", data)
    for parameters in ({}, {"content_type": "base64"}):
        body = {
            "id": "abc",
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [_b64(data)], **parameters}],
        }
        for headers in ({}, {"content-type": "application/json"}):
            response = oip_service.client.post("/v2/models/pretrained/infer", content=json.dumps(body), headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
            answer = response.json()
            assert (answer["model_name"], answer["model_version"], answer["id"]) == ("pretrained", "1.0.0", "abc")
            outputs = {o["name"]: o for o in answer["outputs"]}
            assert outputs["probabilities"]["shape"] == [1, 3]
            np.testing.assert_allclose(outputs["probabilities"]["data"], expected, atol=1e-5)
            assert outputs["label"] == {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["dog"]}


def test_versioned_infer_and_nested_json_data(oip_service: ServiceProcess) -> None:
    body = {
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [2], "data": [[_b64(red_jpeg())], [_b64(red_jpeg())]]}
        ]
    }
    response = oip_service.client.post("/v2/models/pretrained/versions/1.0.0/infer", json=body)
    assert response.status_code == 200, response.text
    assert {o["name"]: o["data"] for o in response.json()["outputs"]}["label"] == ["cat", "cat"]
    assert oip_service.client.post("/v2/models/pretrained/versions/2.0.0/infer", json=body).status_code == 404


def test_raw_binary_extension(oip_service: ServiceProcess) -> None:
    """The wire format itself: a JSON header, then BYTES elements each prefixed by a little-endian u32 length;
    binary outputs come back after the JSON header with their sizes."""
    images = [red_jpeg(), encode(solid(BLUE), "PNG")]
    blob = b"".join(struct.pack("<I", len(d)) + d for d in images)
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(blob)}}
            ],
            "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}, {"name": "label"}],
        }
    ).encode()
    response = oip_service.client.post(
        "/v2/models/pretrained/infer",
        content=header + blob,
        headers={"Inference-Header-Content-Length": str(len(header)), "content-type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text
    length = int(response.headers["inference-header-content-length"])
    answer = json.loads(response.content[:length])
    probabilities_meta, label_meta = answer["outputs"]
    size = probabilities_meta["parameters"]["binary_data_size"]
    assert size == 2 * 3 * 4
    values = np.frombuffer(response.content[length : length + size], dtype="<f4").reshape(2, 3)
    expected = [predict_probabilities(oip_service, "pretrained", d) for d in images]
    np.testing.assert_allclose(values, expected, atol=1e-5)
    assert label_meta["data"] == ["cat", "dog"]
    assert len(response.content) == length + size


def test_requested_outputs_filter_and_binary_default(
    oip_service: ServiceProcess, client: triton.InferenceServerClient
) -> None:
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([red_jpeg()], dtype=np.object_))
    result = client.infer("pretrained", [tensor], outputs=[triton.InferRequestedOutput("label", binary_data=False)])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["label"]
    assert result.as_numpy("probabilities") is None
    assert list(result.as_numpy("label")) == ["cat"]
    body = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [_b64(red_jpeg())]}],
        "parameters": {"binary_data_output": True},
    }
    response = oip_service.client.post("/v2/models/pretrained/infer", json=body)
    length = int(response.headers["inference-header-content-length"])
    outputs = json.loads(response.content[:length])["outputs"]
    assert [o["parameters"]["binary_data_size"] for o in outputs] == [12, 4 + len(b"cat")]
    assert response.content[length + 12 :] == struct.pack("<I", 3) + b"cat"


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_fp32_matches_onnx_runtime(oip_repository: Path, client: triton.InferenceServerClient, binary: bool) -> None:
    batch = random_batch("scratch", 3)
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    result = client.infer(
        "scratch", [tensor], outputs=[triton.InferRequestedOutput("probabilities", binary_data=binary)]
    )
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), onnx_probabilities(oip_repository, "scratch", batch), atol=1e-5
    )


# --- errors: each in the protocol's shape, each followed by a request that still succeeds -------------------------

BAD_BODIES = {
    "not json": (b"{nope", 400, "JSON"),
    "not an object": (b"[1, 2]", 400, "object"),
    "no inputs": (b'{"inputs": []}', 400, "inputs"),
    "bad shape": (
        json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [-1], "data": []}]}),
        400,
        "shape",
    ),
    "count mismatch": (
        json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [2], "data": ["AAAA"]}]}),
        400,
        "2 element",
    ),
    "bad base64": (
        json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": ["%%%"]}]}),
        400,
        "base64",
    ),
    "not an image": (
        json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [_b64(b"hello, world")]}]}),
        400,
        "",
    ),
    "empty element": (
        json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [""]}]}),
        400,
        "empty",
    ),
    "unknown input": (
        json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1], "data": [1.0]}]}),
        400,
        "no input 'pixels'",
    ),
    "wrong fp32 shape": (
        json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 3, 2, 2], "data": [0.0] * 12}]}),
        400,
        "[-1, 3, 32, 32]",
    ),
    "fp32 not numbers": (
        json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1], "data": ["x"]}]}),
        400,
        "numbers",
    ),
    "image as fp32": (
        json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1], "data": [1.0]}]}),
        400,
        "BYTES [-1]",
    ),
    "unknown output": (
        json.dumps(
            {
                "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [_b64(red_jpeg())]}],
                "outputs": [{"name": "logits"}],
            }
        ),
        400,
        "no output named 'logits'",
    ),
    "too many images": (
        json.dumps({"inputs": [{"name": "image", "datatype": "BYTES", "shape": [5], "data": [_b64(red_jpeg())] * 5}]}),
        413,
        "limit is 4",
    ),
    "too many pixels": (
        json.dumps(
            {
                "inputs": [
                    {"name": "image", "datatype": "BYTES", "shape": [1], "data": [_b64(png_declaring(50_000, 50_000))]}
                ]
            }
        ),
        413,
        "",
    ),
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_bad_requests_are_4xx_in_the_protocols_shape(oip_service: ServiceProcess, case: str) -> None:
    body, status, hint = BAD_BODIES[case]
    response = oip_service.client.post("/v2/models/pretrained/infer", content=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert list(error) == ["error"] and isinstance(error["error"], str)
    assert hint in error["error"]
    assert response.headers["x-request-id"]
    assert_oip_still_serving(oip_service)


def test_bad_binary_framing(oip_service: ServiceProcess) -> None:
    header = json.dumps(
        {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 10}}]}
    ).encode()
    cases = {
        "length beyond the body": ({"Inference-Header-Content-Length": "99999"}, header + b"x" * 10),
        "length not a number": ({"Inference-Header-Content-Length": "ten"}, header + b"x" * 10),
        "element overruns": (
            {"Inference-Header-Content-Length": str(len(header))},
            header + struct.pack("<I", 100) + b"x" * 6,
        ),
        "data left over": ({"Inference-Header-Content-Length": str(len(header))}, header + b"x" * 12),
    }
    for name, (headers, body) in cases.items():
        response = oip_service.client.post("/v2/models/pretrained/infer", content=body, headers=headers)
        assert response.status_code == 400, (name, response.text)
        assert "error" in response.json()
        assert_oip_still_serving(oip_service)


def test_unknown_and_broken_models(oip_service: ServiceProcess, client: triton.InferenceServerClient) -> None:
    body = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [_b64(red_jpeg())]}]}
    unknown = oip_service.client.post("/v2/models/nope/infer", json=body)
    assert unknown.status_code == 404
    assert "nope" in unknown.json()["error"]
    assert oip_service.client.get("/v2/models/nope").status_code == 404
    broken = oip_service.client.post(f"/v2/models/{BROKEN}/infer", json=body)
    assert broken.status_code == 503
    assert broken.headers["retry-after"]
    assert "not ready" in broken.json()["error"]
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([red_jpeg()], dtype=np.object_))
    with pytest.raises(InferenceServerException) as refused:
        client.infer(BROKEN, [tensor])
    assert refused.value.status() == "503"
    assert_oip_still_serving(oip_service)


def test_too_large_body_is_413(oip_service: ServiceProcess) -> None:
    response = oip_service.client.post("/v2/models/pretrained/infer", content=b"x" * (10 * 1024 * 1024 + 1))
    assert response.status_code == 413
    assert "error" in response.json()
    assert_oip_still_serving(oip_service)


# --- one data plane: metrics and the access log -------------------------------------------------------------------


def test_metrics_and_access_log(oip_service: ServiceProcess) -> None:
    response = oip_service.client.post(
        "/v2/models/pretrained/infer",
        json={
            "id": "log-me",
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [_b64(red_jpeg())]}],
        },
        headers={"x-request-id": "trace-123"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "trace-123"
    metrics = oip_service.client.get("/metrics").text
    assert 'catdog_request_duration_seconds_count{model="pretrained",protocol="oip_rest"}' in metrics
    assert 'catdog_predictions_total{label="cat",model="pretrained"}' in metrics
    [line] = oip_service.wait_for_log(lambda r: r.get("request_id") == "trace-123")
    assert line["path"] == "/v2/models/pretrained/infer"
    assert (line["status"], line["model"], line["oip_id"], line["label"]) == (200, "pretrained", "log-me", ["cat"])
