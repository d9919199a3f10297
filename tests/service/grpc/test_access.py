"""Access control over gRPC against the real service: every method without a key, with an unknown key, with a
key of the wrong scope and with the right one (tritonclient's gRPC client with `headers=`, raw calls for the
repository methods, KServe's SDK in a subprocess); health and ServerLive/ServerReady stay open; refusals are
counted by reason and logged with the key's name. Without a keys file: inference open, admin refused."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.support.access import ADMIN, INFER, METRICS, UNKNOWN, keys_volume
from tests.support.oip import red_jpeg
from tests.support.server import REPO_ROOT, ServiceProcess

# Every call that changes the server (catdog serves none of them yet: past the door they are UNIMPLEMENTED).
REPOSITORY_METHODS = [
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
]


@pytest.fixture(scope="module")
def keyed(oip_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    volume = keys_volume(tmp_path_factory.mktemp("keys"))
    env = {"CATDOG_MODEL_DIR": str(oip_repository), "CATDOG_API_KEYS_FILE": str(volume.path("keys.json"))}
    with ServiceProcess(env) as service:
        yield service


@pytest.fixture
def client(keyed: ServiceProcess) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(keyed.grpc_target)
    yield c
    c.close()


def metadata(key: str | None, *, header: str = "authorization") -> list[tuple[str, str]]:
    if key is None:
        return []
    return [(header, f"Bearer {key}" if header == "authorization" else key)]


def image() -> triton.InferInput:
    tensor = triton.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([red_jpeg()], dtype=np.object_))
    return tensor


def infer_calls(client: triton.InferenceServerClient) -> dict[str, object]:
    """Every infer-scope method, as tritonclient calls it (`headers` become metadata)."""
    return {
        "ModelInfer": lambda h: client.infer("pretrained", [image()], headers=h),
        "ModelMetadata": lambda h: client.get_model_metadata("pretrained", headers=h),
        "ModelReady": lambda h: client.is_model_ready("pretrained", headers=h),
        "ServerMetadata": lambda h: client.get_server_metadata(headers=h),
        "ModelConfig": lambda h: client.get_model_config("pretrained", headers=h),
        "ModelStatistics": lambda h: client.get_inference_statistics("pretrained", headers=h),
    }


def status_of(call: object, headers: dict[str, str] | None) -> str:
    try:
        call(headers)  # type: ignore[operator]
    except InferenceServerException as exc:
        return str(exc.status())
    return "OK"


def test_every_infer_method_needs_an_infer_key(client: triton.InferenceServerClient) -> None:
    for method, call in infer_calls(client).items():
        assert status_of(call, None) == "StatusCode.UNAUTHENTICATED", method
        assert status_of(call, {"authorization": f"Bearer {UNKNOWN}"}) == "StatusCode.UNAUTHENTICATED", method
        for wrong in (ADMIN, METRICS):
            assert status_of(call, {"authorization": f"Bearer {wrong}"}) == "StatusCode.PERMISSION_DENIED", method
        past_door = status_of(call, {"authorization": f"Bearer {INFER}"})
        assert past_door == "OK", (method, past_door)
        assert status_of(call, {"x-api-key": INFER}) == past_door
    result = client.infer("pretrained", [image()], headers={"authorization": f"Bearer {INFER}"})
    assert list(result.as_numpy("label")) == [b"cat"]


def test_health_and_server_live_ready_stay_open(keyed: ServiceProcess, client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() and client.is_server_ready()
    with grpc.insecure_channel(keyed.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "inference.GRPCInferenceService", "liveness"):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


def raw_call(target: str, method: str, key: str | None, header: str = "authorization") -> grpc.StatusCode:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}")
        try:
            call(b"", metadata=metadata(key, header=header), timeout=10)
        except grpc.RpcError as exc:
            return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize("method", REPOSITORY_METHODS)
def test_repository_methods_need_an_admin_key(keyed: ServiceProcess, method: str) -> None:
    target = keyed.grpc_target
    assert raw_call(target, method, None) == grpc.StatusCode.UNAUTHENTICATED
    assert raw_call(target, method, UNKNOWN) == grpc.StatusCode.UNAUTHENTICATED
    assert raw_call(target, method, INFER) == grpc.StatusCode.PERMISSION_DENIED
    assert raw_call(target, method, METRICS, header="x-api-key") == grpc.StatusCode.PERMISSION_DENIED
    # Past the door, the repository API (tests/service/models): the index answers; load and unload act only in
    # explicit model control mode (this service runs `none`): INVALID_ARGUMENT.
    expected = {"RepositoryIndex": grpc.StatusCode.OK, "RepositoryModelLoad": grpc.StatusCode.INVALID_ARGUMENT}
    expected["RepositoryModelUnload"] = grpc.StatusCode.INVALID_ARGUMENT
    # The others past the door are not served.
    assert raw_call(target, method, ADMIN) == expected.get(method, grpc.StatusCode.UNIMPLEMENTED)


def test_refusals_are_counted_and_logged_with_the_keys_name(keyed: ServiceProcess) -> None:
    with grpc.insecure_channel(keyed.grpc_target) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ServerMetadata")
        with pytest.raises(grpc.RpcError):
            call(b"", metadata=[("authorization", f"Bearer {ADMIN}")], timeout=10)
        call(b"", metadata=[("authorization", f"Bearer {INFER}"), ("x-request-id", "grpc-keyed")], timeout=10)
        meta = channel.unary_unary("/inference.GRPCInferenceService/ModelMetadata")
        meta(
            b"\n\npretrained",
            metadata=[("authorization", f"Bearer {INFER}"), ("x-request-id", "grpc-named")],
            timeout=10,
        )
    refused = keyed.wait_for_log(
        lambda r: r.get("path") == "/inference.GRPCInferenceService/ServerMetadata" and r.get("key") == "ops"
    )
    assert refused and refused[0]["status"] == "PERMISSION_DENIED" and refused[0]["error"] == "forbidden"
    named = keyed.wait_for_log(lambda r: r.get("request_id") == "grpc-named")
    assert named and named[0]["key"] == "ci" and named[0]["status"] == "OK"
    text = keyed.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS}"}).text
    assert 'catdog_access_refused_total{reason="wrong_scope",transport="grpc"}' in text
    assert ADMIN not in keyed.output() and INFER not in keyed.output()


KSERVE_SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    import numpy as np
    from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

    http_port, grpc_target, key = sys.argv[1], sys.argv[2], sys.argv[3]
    jpeg = open(sys.argv[4], "rb").read()

    def request():
        image = InferInput("image", [1], "BYTES")
        image.set_data_from_numpy(np.array([jpeg], dtype=np.object_), binary_data=True)
        return InferRequest("pretrained", [image])

    async def main():
        rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
        base = f"http://127.0.0.1:{http_port}"
        answer = await rest.infer(base, request(), model_name="pretrained", headers={"Authorization": "Bearer " + key})
        print("rest-key", answer.outputs[1].as_numpy()[0])
        try:
            await rest.infer(base, request(), model_name="pretrained")
            print("rest-none", "OK")
        except Exception as exc:
            print("rest-none", getattr(getattr(exc, "response", None), "status_code", type(exc).__name__))
        await rest.close()
        client = InferenceGRPCClient(grpc_target, retries=0)
        answer = await client.infer(request(), headers=[("authorization", "Bearer " + key)])
        print("grpc-key", answer.outputs[1].as_numpy()[0].decode())
        try:
            await client.infer(request())
            print("grpc-none", "OK")
        except Exception as exc:
            print("grpc-none", exc.code().name if hasattr(exc, "code") else type(exc).__name__)
        await client.close()

    asyncio.run(main())
    """
)


def test_kserve_sdk_sends_the_key_over_rest_and_grpc(keyed: ServiceProcess, tmp_path: Path) -> None:
    (tmp_path / "red.jpg").write_bytes(red_jpeg())
    run = subprocess.run(
        [sys.executable, "-c", KSERVE_SCRIPT, str(keyed.port), keyed.grpc_target, INFER, str(tmp_path / "red.jpg")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stderr
    answers = dict(line.split(" ", 1) for line in run.stdout.splitlines())
    assert answers == {"rest-key": "cat", "rest-none": "401", "grpc-key": "cat", "grpc-none": "UNAUTHENTICATED"}


def test_without_a_keys_file_inference_is_open_and_admin_is_refused(oip_service: ServiceProcess) -> None:
    client = triton.InferenceServerClient(oip_service.grpc_target)
    try:
        assert list(client.infer("pretrained", [image()]).as_numpy("label")) == [b"cat"]
    finally:
        client.close()
    for method in REPOSITORY_METHODS:
        assert raw_call(oip_service.grpc_target, method, None) == grpc.StatusCode.PERMISSION_DENIED
        assert raw_call(oip_service.grpc_target, method, ADMIN) == grpc.StatusCode.PERMISSION_DENIED
