"""The Open Inference Protocol over gRPC, against the real service process: tritonclient's gRPC client
unchanged, grpc.health.v1 as Kubernetes' probes call it, and the service's own stubs for the typed `contents`
path. Values are compared with /predict and ONNX Runtime."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from loadtest.ports import free_port
from service.grpc import inference_pb2 as pb
from service.grpc import inference_pb2_grpc as pb_grpc
from tests.support.images import BLUE, encode, png_declaring, solid
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
    c = triton.InferenceServerClient(oip_service.grpc_target)
    yield c
    c.close()


@pytest.fixture
def channel(oip_service: ServiceProcess) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(oip_service.grpc_target) as ch:
        yield ch


def _image_input(images: list[bytes]) -> triton.InferInput:
    tensor = triton.InferInput("image", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_))
    return tensor


def assert_grpc_still_serving(client: triton.InferenceServerClient) -> None:
    result = client.infer("pretrained", [_image_input([red_jpeg()])])
    assert list(result.as_numpy("label")) == [b"cat"]


def test_live_ready_and_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("pretrained")
    assert client.is_model_ready("scratch", "0.1.0")
    assert not client.is_model_ready(BROKEN)
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "catdog" and "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata("scratch", as_json=True)
    assert meta["versions"] == ["0.1.0"]
    assert meta["platform"] == "onnxruntime_onnx"
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("image", "BYTES", ["-1", "1"]),
        ("input", "FP32", ["-1", "3", "48", "40"]),
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["outputs"]] == [
        ("probabilities", "FP32", ["-1", "2"]),
        ("label", "BYTES", ["-1"]),
    ]


def test_images_match_predict(
    oip_service: ServiceProcess, client: triton.InferenceServerClient, photos: dict[str, Path]
) -> None:
    images = [photos[n].read_bytes() for n in ("cat-cat.webp", "dog-dog.jpg", "dog-cifar10-12-5.png")]
    result = client.infer("pretrained", [_image_input(images)], request_id="grpc-1")
    expected = [predict_probabilities(oip_service, "pretrained", d) for d in images]
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (3, 3)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert [x.decode() for x in result.as_numpy("label")] == [LABELS["pretrained"][int(np.argmax(r))] for r in expected]
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("grpc-1", "pretrained", "1.0.0")


def test_requested_outputs(client: triton.InferenceServerClient) -> None:
    result = client.infer("pretrained", [_image_input([red_jpeg()])], outputs=[triton.InferRequestedOutput("label")])
    assert [o.name for o in result.get_response().outputs] == ["label"]
    assert result.as_numpy("probabilities") is None
    with pytest.raises(InferenceServerException) as bad:
        client.infer("pretrained", [_image_input([red_jpeg()])], outputs=[triton.InferRequestedOutput("logits")])
    assert bad.value.status() == "StatusCode.INVALID_ARGUMENT"


def test_fp32_matches_onnx_runtime(oip_repository: Path, client: triton.InferenceServerClient) -> None:
    batch = random_batch("pretrained", 2, seed=3)
    tensor = triton.InferInput("input", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch)
    result = client.infer("pretrained", [tensor])
    np.testing.assert_allclose(
        result.as_numpy("probabilities"), onnx_probabilities(oip_repository, "pretrained", batch), atol=1e-5
    )


def test_typed_contents_instead_of_raw(
    oip_repository: Path, oip_service: ServiceProcess, channel: grpc.Channel
) -> None:
    """A client that fills `contents` (bytes_contents, fp32_contents) rather than raw_input_contents."""
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    data = encode(solid(BLUE), "PNG")
    request = pb.ModelInferRequest(model_name="pretrained", id="typed")
    request.inputs.add(
        name="image", datatype="BYTES", shape=[1], contents=pb.InferTensorContents(bytes_contents=[data])
    )
    response, call = stub.ModelInfer.with_call(request, metadata=[("x-request-id", "typed-trace")])
    assert dict(call.initial_metadata())["x-request-id"] == "typed-trace"
    assert response.id == "typed"
    assert [o.name for o in response.outputs] == ["probabilities", "label"]
    values = np.frombuffer(response.raw_output_contents[0], dtype="<f4")
    np.testing.assert_allclose(values, predict_probabilities(oip_service, "pretrained", data), atol=1e-5)
    assert response.raw_output_contents[1] == b"\x03\x00\x00\x00dog"
    batch = random_batch("pretrained", 1, seed=5)
    request = pb.ModelInferRequest(model_name="pretrained")
    request.inputs.add(
        name="input", datatype="FP32", shape=batch.shape, contents=pb.InferTensorContents(fp32_contents=batch.ravel())
    )
    response = stub.ModelInfer(request)
    np.testing.assert_allclose(
        np.frombuffer(response.raw_output_contents[0], dtype="<f4"),
        onnx_probabilities(oip_repository, "pretrained", batch)[0],
        atol=1e-5,
    )


def test_health_follows_readiness(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "inference.GRPCInferenceService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert (
        health.Check(health_pb2.HealthCheckRequest(service="liveness")).status == health_pb2.HealthCheckResponse.SERVING
    )
    with pytest.raises(grpc.RpcError) as unknown:
        health.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    first = next(health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5))
    assert first.status == health_pb2.HealthCheckResponse.SERVING


# --- errors ------------------------------------------------------------------------------------------------------


def _raw_request(model: str, name: str, datatype: str, shape: list[int], raw: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


BAD = {
    "not an image": (_raw_request("pretrained", "image", "BYTES", [1], b"\x05\x00\x00\x00hello"), "INVALID_ARGUMENT"),
    "truncated element": (
        _raw_request("pretrained", "image", "BYTES", [1], b"\x50\x00\x00\x00hello"),
        "INVALID_ARGUMENT",
    ),
    "wrong fp32 shape": (_raw_request("pretrained", "input", "FP32", [1, 3, 2, 2], b"\0" * 48), "INVALID_ARGUMENT"),
    "fp32 size mismatch": (_raw_request("pretrained", "input", "FP32", [1, 3, 32, 32], b"\0" * 40), "INVALID_ARGUMENT"),
    "unknown input": (_raw_request("pretrained", "pixels", "FP32", [1], b"\0" * 4), "INVALID_ARGUMENT"),
    "unknown datatype": (_raw_request("pretrained", "image", "INT8", [1], b"\0"), "INVALID_ARGUMENT"),
    "too many images": (
        _raw_request(
            "pretrained",
            "image",
            "BYTES",
            [5],
            b"".join(len(red_jpeg()).to_bytes(4, "little") + red_jpeg() for _ in range(5)),
        ),
        "INVALID_ARGUMENT",
    ),
    "too many pixels": (
        _raw_request(
            "pretrained",
            "image",
            "BYTES",
            [1],
            len(png_declaring(50_000, 50_000)).to_bytes(4, "little") + png_declaring(50_000, 50_000),
        ),
        "INVALID_ARGUMENT",
    ),
    "unknown model": (_raw_request("nope", "image", "BYTES", [1], b"\0\0\0\0"), "NOT_FOUND"),
    "broken model": (_raw_request(BROKEN, "image", "BYTES", [1], b"\0\0\0\0"), "UNAVAILABLE"),
}


@pytest.mark.parametrize("case", BAD)
def test_errors_map_to_grpc_codes(channel: grpc.Channel, client: triton.InferenceServerClient, case: str) -> None:
    request, code = BAD[case]
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(request)
    assert refused.value.code().name == code
    assert refused.value.details()
    if code == "UNAVAILABLE":  # REST's Retry-After, as trailing metadata
        assert dict(refused.value.trailing_metadata() or ())["retry-after"] == "5"
    assert_grpc_still_serving(client)


def test_broken_model_through_tritonclient(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as refused:
        client.infer(BROKEN, [_image_input([red_jpeg()])])
    assert refused.value.status() == "StatusCode.UNAVAILABLE"
    assert "not ready" in refused.value.message()
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("nope")
    assert unknown.value.status() == "StatusCode.NOT_FOUND"
    assert_grpc_still_serving(client)


def test_metrics_and_access_log(oip_service: ServiceProcess, client: triton.InferenceServerClient) -> None:
    client.infer("pretrained", [_image_input([red_jpeg()])], request_id="grpc-log", headers={"x-request-id": "g-trace"})
    metrics = oip_service.client.get("/metrics").text
    assert 'catdog_request_duration_seconds_count{model="pretrained",protocol="oip_grpc"}' in metrics
    [line] = oip_service.wait_for_log(lambda r: r.get("request_id") == "g-trace")
    assert line["path"] == "/inference.GRPCInferenceService/ModelInfer"
    assert (line["status"], line["model"], line["oip_id"], line["label"]) == ("OK", "pretrained", "grpc-log", ["cat"])


# --- the switch and the port ---------------------------------------------------------------------------------------


def test_grpc_can_be_turned_off(oip_repository: Path) -> None:
    env = {"CATDOG_MODEL_DIR": str(oip_repository), "CATDOG_GRPC_ENABLED": "false"}
    with ServiceProcess(env) as oip_service:
        with grpc.insecure_channel(oip_service.grpc_target) as ch, pytest.raises(grpc.RpcError) as refused:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert oip_service.client.get("/v2/health/ready").json() == {"ready": True}  # REST v2 does not need gRPC


def test_a_taken_grpc_port_stops_start_up(oip_repository: Path) -> None:
    """One worker binds the port exclusively: a second server on it fails loudly instead of sharing it."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        oip_service = ServiceProcess({"CATDOG_MODEL_DIR": str(oip_repository), "CATDOG_GRPC_PORT": str(port)})
        with pytest.raises(RuntimeError, match="cannot listen for gRPC"):
            oip_service.start(wait="live", timeout=30)
        assert oip_service.stop() != 0


def test_message_over_the_upload_limit_is_refused(channel: grpc.Channel, client: triton.InferenceServerClient) -> None:
    """CATDOG_MAX_UPLOAD_BYTES (10 MiB here) bounds a gRPC message as it bounds a REST body."""
    big = b"\0" * (10 * 1024 * 1024 + 128 * 1024)
    request = _raw_request("pretrained", "image", "BYTES", [1], len(big).to_bytes(4, "little") + big)
    with pytest.raises(grpc.RpcError) as refused:
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert_grpc_still_serving(client)


def test_grpc_port_flag(oip_repository: Path) -> None:
    """`catdog serve --grpc-port N` overrides CATDOG_GRPC_PORT."""
    port = free_port()
    with ServiceProcess({"CATDOG_MODEL_DIR": str(oip_repository)}, args=["--grpc-port", str(port)]) as oip_service:
        assert port != oip_service.grpc_port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            reply = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
