"""Drain and overload over both Open Inference Protocol transports, against the real server process with a slow
model: on SIGTERM gRPC health turns NOT_SERVING and /v2 readiness 503 at once, new calls are refused (503 /
UNAVAILABLE) while admitted ones finish; past the admission limit calls are refused at once, and the service
keeps answering."""

from __future__ import annotations

import base64
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.grpc import inference_pb2 as pb
from service.grpc import inference_pb2_grpc as pb_grpc
from tests.support.hostile import JPEG, write_slow_repository
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.slow

BODY = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], "data": [base64.b64encode(JPEG).decode()]}]}


@pytest.fixture(scope="module")
def slow_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_slow_repository(tmp_path_factory.mktemp("slow"))


def _grpc_request() -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="pretrained")
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(len(JPEG).to_bytes(4, "little") + JPEG)
    return request


def _grpc_infer(stub: pb_grpc.GRPCInferenceServiceStub) -> str:
    try:
        response = stub.ModelInfer(_grpc_request(), timeout=30)
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return "OK" if response.raw_output_contents[1].endswith(b"cat") else "wrong answer"


def _rest_infer(client: httpx.Client) -> int:
    response = client.post("/v2/models/pretrained/infer", json=BODY)
    if response.status_code == 503:  # refused at the door, in the protocol's shape
        assert isinstance(response.json()["error"], str), response.text
        assert response.headers["retry-after"]
    return response.status_code


def _in_flight(svc: ServiceProcess) -> float:
    for line in svc.client.get("/metrics").text.splitlines():
        if line.startswith('catdog_requests_in_flight{model="pretrained"}'):
            return float(line.split()[-1])
    return 0.0


def test_sigterm_drains_both_protocols(slow_repository: Path) -> None:
    env = {
        "CATDOG_MODEL_DIR": str(slow_repository),
        "CATDOG_INTRA_OP_THREADS": "1",
        "CATDOG_DRAIN_DELAY_S": "1.5",
        "CATDOG_DRAIN_TIMEOUT_S": "15",
        "CATDOG_ADMISSION_MIN_LIMIT": "64",
    }
    svc = ServiceProcess(env).start()
    channel = grpc.insecure_channel(svc.grpc_target)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    health = health_pb2_grpc.HealthStub(channel)
    assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.SERVING
    with ThreadPoolExecutor(max_workers=16) as pool, httpx.Client(base_url=svc.base_url, timeout=30) as client:
        grpc_calls = [pool.submit(_grpc_infer, stub) for _ in range(6)]
        rest_calls = [pool.submit(_rest_infer, client) for _ in range(6)]
        deadline = time.monotonic() + 15
        while _in_flight(svc) + sum(f.done() for f in grpc_calls + rest_calls) < 12:
            assert time.monotonic() < deadline, "the calls did not reach the service"
            time.sleep(0.01)
        assert svc.proc is not None
        signalled = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        # Within the drain delay: both transports still answer, and refuse new work.
        assert health.Check(health_pb2.HealthCheckRequest()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        liveness = health_pb2.HealthCheckRequest(service="liveness")
        assert health.Check(liveness).status == health_pb2.HealthCheckResponse.SERVING
        assert not stub.ServerReady(pb.ServerReadyRequest()).ready
        assert not stub.ModelReady(pb.ModelReadyRequest(name="pretrained")).ready
        with pytest.raises(grpc.RpcError) as refused:
            stub.ModelInfer(_grpc_request(), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in (refused.value.details() or "")
        ready = svc.client.get("/v2/health/ready")
        assert (ready.status_code, ready.json()) == (503, {"ready": False})
        late = svc.client.post("/v2/models/pretrained/infer", json=BODY)
        assert late.status_code == 503
        assert late.headers["retry-after"]
        assert "shutting down" in late.json()["error"]
        results = [f.result() for f in grpc_calls], [f.result() for f in rest_calls]
    svc.proc.wait(timeout=30)
    exited = time.monotonic()
    channel.close()
    svc.stop()
    assert results == (["OK"] * 6, [200] * 6)
    assert 1.5 <= exited - signalled <= 15


def test_overload_is_refused_on_both_protocols(slow_repository: Path) -> None:
    env = {
        "CATDOG_MODEL_DIR": str(slow_repository),
        "CATDOG_INTRA_OP_THREADS": "1",
        "CATDOG_ADMISSION_MIN_LIMIT": "1",
        "CATDOG_ADMISSION_MAX_LIMIT": "1",
    }
    with ServiceProcess(env) as svc, grpc.insecure_channel(svc.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        with ThreadPoolExecutor(max_workers=16) as pool, httpx.Client(base_url=svc.base_url, timeout=30) as client:
            grpc_calls = [pool.submit(_grpc_infer, stub) for _ in range(8)]
            rest_calls = [pool.submit(_rest_infer, client) for _ in range(8)]
            grpc_results = [f.result() for f in grpc_calls]
            rest_results = [f.result() for f in rest_calls]
        assert "UNAVAILABLE" in grpc_results, grpc_results
        assert 503 in rest_results, rest_results
        assert set(grpc_results) <= {"OK", "UNAVAILABLE"}
        assert set(rest_results) <= {200, 503}
        assert "OK" in grpc_results or 200 in rest_results
        metrics = svc.client.get("/metrics").text
        assert 'catdog_rejected_requests_total{model="pretrained",reason="overloaded"}' in metrics
        # Afterwards both still answer.
        assert _grpc_infer(stub) == "OK"
        assert _rest_infer(svc.client) == 200
