"""Triton's own tools against the real service, unchanged: perf_analyzer in its default mode over gRPC and HTTP,
tritonclient's model configuration, statistics and classification, the calls of Triton's example clients, errors
read through InferenceServerException, and gRPC server reflection. Statistics are held to /metrics."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from tritonclient.utils import InferenceServerException

from service.grpc import inference_pb2 as pb
from service.grpc import inference_pb2_grpc as pb_grpc
from service.grpc.access import ADMIN_METHODS, INFERENCE
from service.grpc.servicer import UNSERVED
from tests.support import perf_analyzer
from tests.support.oip import LABELS, write_oip_repository
from tests.support.server import ServiceProcess

PHOTO = "dog-dog.jpg"
MODEL = "pretrained"
Client = Any  # tritonclient.http or .grpc InferenceServerClient
CLIENTS = ("http", "grpc")


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    repository = write_oip_repository(tmp_path_factory.mktemp("triton-models"))
    with ServiceProcess({"CATDOG_MODEL_DIR": str(repository), "CATDOG_MAX_FILES_PER_REQUEST": "8"}) as service:
        yield service


@pytest.fixture(scope="module")
def jpeg(photos: dict[str, Path]) -> bytes:
    return photos[PHOTO].read_bytes()


def client_for(svc: ServiceProcess, kind: str) -> Client:
    if kind == "http":
        return httpclient.InferenceServerClient(f"127.0.0.1:{svc.port}")
    return grpcclient.InferenceServerClient(svc.grpc_target)


def module_of(kind: str) -> Any:
    return httpclient if kind == "http" else grpcclient


def stats(svc: ServiceProcess, model: str = MODEL) -> dict[str, Any]:
    body = svc.client.get(f"/v2/models/{model}/stats").json()
    [entry] = body["model_stats"]
    return dict(entry)


def image_input(kind: str, images: list[bytes], shape: list[int]) -> Any:
    tensor = module_of(kind).InferInput("image", shape, "BYTES")
    tensor.set_data_from_numpy(np.array(images, dtype=np.object_).reshape(shape))
    return tensor


# perf_analyzer


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_perf_analyzer_default_mode(
    svc: ServiceProcess, jpeg: bytes, tmp_path: Path, protocol: str, batch: int
) -> None:
    """Its default (Triton) mode: it reads the model configuration, sends the real JPEG as `image` [batch, 1] at
    concurrency 1 and 4, and reports server-side statistics that add up. Windows of a few requests keep it short
    on a loaded machine (a benchmark is docs/benchmarks.md's job, not this test's)."""
    wrapper = perf_analyzer.require_perf_analyzer()
    data = perf_analyzer.image_input_data(tmp_path / "input.json", jpeg)
    url = svc.grpc_target if protocol == "grpc" else f"127.0.0.1:{svc.port}"
    before = stats(svc)
    args = [
        *("-m", MODEL, "-u", url, "-i", protocol, "-b", str(batch), "--input-data", str(data)),
        *("--concurrency-range", "1:4:3", "--measurement-mode", "count_windows", "--measurement-request-count", "6"),
        *("--stability-percentage", "9999", "--max-trials", "10"),
    ]
    stdout, measurements = perf_analyzer.run(wrapper, args, tmp_path / "result.csv")
    after = stats(svc)
    assert [m.concurrency for m in measurements] == [1, 4], stdout
    for m in measurements:
        assert m.server_requests > 0, stdout
        # Every request carried `batch` images; images are counted as they run and requests as they finish, so a
        # window's edges may cut through the requests in flight (at most `concurrency` of them).
        assert abs(m.server_inferences - batch * m.server_requests) <= batch * m.concurrency, stdout
        assert m.server_executions == m.server_inferences  # no batching configured: one ONNX run per image
        assert abs(m.client_requests - m.server_requests) <= m.concurrency, stdout  # window edges only
        assert float(m.csv["Server Compute Infer"]) > 0, m.csv
        assert float(m.csv["Server Compute Input"]) > 0, m.csv
    # Quiescent again: exactly. Everything it sent was a success with `batch` images, and its windows are within
    # what catdog counted.
    sent = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    assert after["inference_stats"]["fail"]["count"] == before["inference_stats"]["fail"]["count"]
    assert after["inference_count"] - before["inference_count"] == batch * sent
    assert sent >= sum(m.server_requests for m in measurements)


# tritonclient: configuration, statistics, classification


@pytest.mark.parametrize("kind", CLIENTS)
def test_model_config(svc: ServiceProcess, kind: str) -> None:
    client = client_for(svc, kind)
    config = client.get_model_config(MODEL)
    if kind == "grpc":
        from google.protobuf import json_format

        config = json_format.MessageToDict(config.config, preserving_proto_field_name=True)
    assert config["name"] == MODEL
    assert config["platform"] == "onnxruntime_onnx"
    assert int(config["max_batch_size"]) == 8  # CATDOG_MAX_FILES_PER_REQUEST
    inputs = {i["name"]: (i["data_type"], [int(d) for d in i["dims"]], i.get("optional")) for i in config["input"]}
    assert inputs == {"image": ("TYPE_STRING", [1], True), "input": ("TYPE_FP32", [3, 32, 32], True)}
    assert [o["name"] for o in config["output"]] == ["probabilities", "label"]
    # The same through a version: the card's and Triton's number of it.
    for version in ("1.0.0", "1"):
        assert client.get_model_config(MODEL, version) is not None
    client.close()


@pytest.mark.parametrize("kind", CLIENTS)
def test_statistics_count_requests_and_images(svc: ServiceProcess, jpeg: bytes, kind: str) -> None:
    client = client_for(svc, kind)
    before = stats(svc)
    for n in (1, 3):  # Triton's [N, 1] and the protocol's [N]
        client.infer(MODEL, [image_input(kind, [jpeg] * n, [n, 1])])
    client.infer(MODEL, [image_input(kind, [jpeg] * 2, [2])])
    got = client.get_inference_statistics(MODEL)
    if kind == "grpc":
        from google.protobuf import json_format

        got = json_format.MessageToDict(got, preserving_proto_field_name=True)
    [entry] = got["model_stats"]
    assert entry["name"] == MODEL
    assert entry["version"] == "1"
    success = entry["inference_stats"]["success"]
    assert int(success["count"]) - before["inference_stats"]["success"]["count"] == 3
    assert int(entry["inference_count"]) - before["inference_count"] == 6
    for stage in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert int(entry["inference_stats"][stage]["count"]) == int(success["count"]), stage
    assert int(entry["inference_stats"]["compute_infer"]["ns"]) > 0
    client.close()


def _metric(text: str, name: str, model: str) -> float:
    """Sum of a series over its other labels, for one model."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and f'model="{model}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_statistics_agree_with_metrics(svc: ServiceProcess, jpeg: bytes) -> None:
    client = client_for(svc, "http")
    client.infer(MODEL, [image_input("http", [jpeg] * 2, [2, 1])])
    bad = svc.client.post(f"/v2/models/{MODEL}/infer", json={"inputs": [{"name": "image", "datatype": "BYTES"}]})
    assert bad.status_code == 400
    client.close()
    entry = stats(svc)
    metrics = svc.client.get("/metrics").text
    assert entry["inference_count"] == _metric(metrics, "catdog_batch_size_sum", MODEL)
    assert entry["execution_count"] == _metric(metrics, "catdog_batch_size_count", MODEL)
    requests = _metric(metrics, "catdog_request_duration_seconds_count", MODEL)
    inference = entry["inference_stats"]
    assert inference["success"]["count"] + inference["fail"]["count"] == requests
    assert inference["fail"]["count"] >= 1
    seconds = _metric(metrics, "catdog_request_duration_seconds_sum", MODEL)
    assert (inference["success"]["ns"] + inference["fail"]["ns"]) / 1e9 == pytest.approx(seconds, rel=1e-6)
    per_size = {b["batch_size"]: b["compute_infer"]["count"] for b in entry["batch_stats"]}
    assert sum(per_size.values()) == entry["execution_count"]


def test_stats_of_every_model(svc: ServiceProcess) -> None:
    """/v2/models/stats is every model with a card, not a model named "stats"."""
    response = svc.client.get("/v2/models/stats")
    assert response.status_code == 200, response.text
    assert sorted(e["name"] for e in response.json()["model_stats"]) == sorted(LABELS)
    assert svc.client.get(f"/v2/models/{MODEL}/versions/1/stats").status_code == 200
    assert svc.client.get(f"/v2/models/{MODEL}/versions/9/stats").json()["error"].startswith("model")


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("k", [1, 2])
def test_classification(svc: ServiceProcess, jpeg: bytes, photos: dict[str, Path], kind: str, k: int) -> None:
    other = photos["cat-cat.webp"].read_bytes()
    module, client = module_of(kind), client_for(svc, kind)
    images = [jpeg, other]
    plain = client.infer(MODEL, [image_input(kind, images, [2, 1])]).as_numpy("probabilities")
    asked = module.InferRequestedOutput("probabilities", class_count=k)
    got = client.infer(MODEL, [image_input(kind, images, [2, 1])], outputs=[asked]).as_numpy("probabilities")
    assert got.shape == (2, k)
    labels = LABELS[MODEL]
    for row, probabilities in zip(got, plain, strict=True):
        expected = np.argsort(-probabilities, kind="stable")[:k]
        fields = [element.decode().split(":") for element in row]
        assert [int(index) for _, index, _ in fields] == list(expected)
        assert [label for _, _, label in fields] == [labels[i] for i in expected]
        assert [float(score) for score, _, _ in fields] == pytest.approx(probabilities[expected], abs=1e-6)
    client.close()


@pytest.mark.parametrize("kind", CLIENTS)
def test_unknown_output_parameter_is_refused(svc: ServiceProcess, jpeg: bytes, kind: str) -> None:
    client = client_for(svc, kind)
    asked = module_of(kind).InferRequestedOutput("label")
    # A parameter catdog does not know (tritonclient has no public setter for one): refused, never ignored.
    if kind == "grpc":
        asked._output.parameters["top_p"].int64_param = 3
    else:
        asked._parameters["top_p"] = 3
    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, [image_input(kind, [jpeg], [1, 1])], outputs=[asked])
    assert "top_p" in raised.value.message()
    assert raised.value.status() in ("400", "StatusCode.INVALID_ARGUMENT")
    label = module_of(kind).InferRequestedOutput("label", class_count=2)
    with pytest.raises(InferenceServerException, match="only 'probabilities' can be classified"):
        client.infer(MODEL, [image_input(kind, [jpeg], [1, 1])], outputs=[label])
    client.close()


# What Triton's example clients (simple_{http,grpc}_health_metadata.py) call, and errors as they read them


@pytest.mark.parametrize("kind", CLIENTS)
def test_health_metadata_calls(svc: ServiceProcess, kind: str) -> None:
    client = client_for(svc, kind)
    assert client.is_server_live(headers={"test": "1", "dummy": "2"})
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    metadata = client.get_server_metadata()
    extensions = metadata["extensions"] if kind == "http" else list(metadata.extensions)
    assert sorted(extensions) == ["binary_tensor_data", "classification", "model_configuration", "statistics"]
    model = client.get_model_metadata(MODEL, headers={"test": "1", "dummy": "2"})
    assert (model["name"] if kind == "http" else model.name) == MODEL
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_metadata("wrong_model_name")
    assert "Request for unknown model" in raised.value.message()
    config = client.get_model_config(MODEL)
    assert (config["name"] if kind == "http" else config.config.name) == MODEL
    client.close()


@pytest.mark.parametrize("kind", CLIENTS)
def test_unserved_calls_are_readable_errors(svc: ServiceProcess, kind: str) -> None:
    """Model control (simple_*_model_control.py) and shared memory: an InferenceServerException with a message.
    Loading a model changes the server: without a keys file it is refused (403) before anything else is asked."""
    client = client_for(svc, kind)
    expected = {
        "load": ("StatusCode.PERMISSION_DENIED", ("403",), "API key file"),
        "shm": ("StatusCode.UNIMPLEMENTED", ("404", "405"), "catdog does not serve"),
    }
    for name, call in (("load", lambda: client.load_model(MODEL)), ("shm", client.get_system_shared_memory_status)):
        grpc_status, http_statuses, words = expected[name]
        with pytest.raises(InferenceServerException) as raised:
            call()
        assert raised.value.message(), raised.value
        if kind == "grpc":
            assert raised.value.status() == grpc_status, name
            assert words in raised.value.message(), name
        else:
            assert raised.value.status() in http_statuses, name
    client.close()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/nowhere", 404),
        ("POST", "/v2/repository/models/pretrained/load", 403),  # admin, and no keys file
        ("DELETE", "/v2/models/pretrained", 405),
        ("GET", "/v2/models/pretrained/infer", 405),
        ("GET", "/v2/models/nope/config", 404),
        ("POST", "/v2/models/pretrained/config", 405),
    ],
)
def test_every_v2_error_has_the_protocols_shape(svc: ServiceProcess, method: str, path: str, status: int) -> None:
    response = svc.client.request(method, path)
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, dict)
    assert list(body) == ["error"]
    assert isinstance(body["error"], str)
    assert body["error"]
    # catdog's own routes keep catdog's shape.
    own = svc.client.get("/v1/nowhere").json()
    assert set(own["error"]) == {"code", "message", "request_id"}


def test_unserved_grpc_calls_say_why(svc: ServiceProcess) -> None:
    stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(svc.grpc_target))
    for method in UNSERVED:
        if method == "ModelStreamInfer":
            with pytest.raises(grpc.RpcError) as raised:
                list(stub.ModelStreamInfer(iter([pb.ModelInferRequest(model_name=MODEL)])))
        else:
            request = getattr(pb, f"{method}Request")()
            with pytest.raises(grpc.RpcError) as raised:
                getattr(stub, method)(request)
        if INFERENCE + method in ADMIN_METHODS:  # changes the server: refused without a keys file, before all else
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED, method
            assert "API key file" in raised.value.details(), method
            continue
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED, method
        assert re.match(rf"catdog does not serve /inference.GRPCInferenceService/{method}: \w", raised.value.details())


# gRPC server reflection


def test_reflection_lists_and_describes(svc: ServiceProcess) -> None:
    channel = grpc.insecure_channel(svc.grpc_target)
    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services
    pool = DescriptorPool(database)
    method = pool.FindServiceByName("inference.GRPCInferenceService").methods_by_name["ModelInfer"]
    assert method.input_type.full_name == "inference.ModelInferRequest"
    assert method.output_type.full_name == "inference.ModelInferResponse"
    assert "raw_input_contents" in method.input_type.fields_by_name
    assert pool.FindMessageTypeByName("inference.ModelConfig").fields_by_name["max_batch_size"].number == 4
    channel.close()


def test_reflection_can_be_turned_off(tmp_path: Path) -> None:
    repository = write_oip_repository(tmp_path / "models")
    with ServiceProcess({"CATDOG_MODEL_DIR": str(repository), "CATDOG_GRPC_REFLECTION": "false"}) as service:
        channel = grpc.insecure_channel(service.grpc_target)
        with pytest.raises(grpc.RpcError) as raised:
            list(ProtoReflectionDescriptorDatabase(channel).get_services())
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
        channel.close()
        assert httpx.get(f"{service.base_url}/v2/health/ready").status_code == 200
