"""Steady load while model versions swap: closed-loop workers on catdog's /v1 route, the Open Inference
Protocol's REST path and its gRPC path, each recording every answer's status, latency and the version that
computed it. Used by tests/service/models/test_swaps.py (zero failed requests, the version moves once per swap)
and by scripts/measure_swaps.py (p99 during a swap against before it).

A worker sends its next request when the last one has answered, so in one worker's sequence every answer
started after the one before it had finished: a version may only move forward in it, once per swap."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import grpc
import httpx
import numpy as np

from service.grpc import inference_pb2 as pb
from service.grpc import inference_pb2_grpc as pb_grpc

Protocol = Literal["predict", "v2", "grpc"]
PROTOCOLS: tuple[Protocol, ...] = ("predict", "v2", "grpc")


@dataclass(frozen=True, slots=True)
class Answer:
    worker: str
    started: float
    latency_s: float
    ok: bool
    version: str
    detail: str = ""


@dataclass
class SwapLoad:
    base_url: str
    grpc_target: str
    model: str
    image: bytes
    workers_per_protocol: int = 2
    protocols: tuple[Protocol, ...] = PROTOCOLS
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every call (an API key: `Authorization: Bearer ...`), as gRPC metadata too."""
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> SwapLoad:
        for protocol in self.protocols:
            for i in range(self.workers_per_protocol):
                thread = threading.Thread(target=self._work, args=(protocol, f"{protocol}-{i}"), daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> list[Answer]:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        return self.snapshot()

    def snapshot(self) -> list[Answer]:
        with self._lock:
            return list(self.answers)

    def _work(self, protocol: Protocol, worker: str) -> None:
        send = {"predict": self._predict, "v2": self._v2, "grpc": self._grpc}[protocol]
        with (
            httpx.Client(base_url=self.base_url, timeout=60, headers=self.headers) as client,
            grpc.insecure_channel(self.grpc_target) as channel,
        ):
            stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok, version, detail = send(client, stub)
                except (httpx.HTTPError, OSError) as exc:
                    ok, version, detail = False, "", f"{type(exc).__name__}: {exc}"
                with self._lock:
                    self.answers.append(Answer(worker, started, time.perf_counter() - started, ok, version, detail))

    def _predict(self, client: httpx.Client, stub: object) -> tuple[bool, str, str]:
        response = client.post(f"/v1/models/{self.model}/predict", files={"file": ("image.jpg", self.image)})
        if response.status_code != 200:
            return False, "", f"{response.status_code} {response.text[:200]}"
        return True, str(response.json()["model_version"]), ""

    def _v2(self, client: httpx.Client, stub: object) -> tuple[bool, str, str]:
        element = len(self.image).to_bytes(4, "little") + self.image
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "image",
                        "datatype": "BYTES",
                        "shape": [1],
                        "parameters": {"binary_data_size": len(element)},
                    }
                ]
            }
        ).encode()
        response = client.post(
            f"/v2/models/{self.model}/infer",
            content=header + element,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
        if response.status_code != 200:
            return False, "", f"{response.status_code} {response.text[:200]}"
        return True, str(response.json()["model_version"]), ""

    def _grpc(self, client: object, stub: pb_grpc.GRPCInferenceServiceStub) -> tuple[bool, str, str]:
        request = pb.ModelInferRequest(model_name=self.model)
        request.inputs.add(name="image", datatype="BYTES", shape=[1])
        request.raw_input_contents.append(len(self.image).to_bytes(4, "little") + self.image)
        try:
            metadata = tuple((k.lower(), v) for k, v in self.headers.items())
            response = stub.ModelInfer(request, timeout=60, metadata=metadata)
        except grpc.RpcError as exc:
            return False, "", f"{exc.code().name} {exc.details()}"
        return True, str(response.model_version), ""


def failures(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if not a.ok]


def moves(answers: list[Answer]) -> dict[str, list[str]]:
    """Each worker's sequence of versions with repeats collapsed: ["1", "2"] is one move."""
    by_worker: dict[str, list[str]] = {}
    for answer in sorted(answers, key=lambda a: a.started):
        if not answer.ok:
            continue
        seen = by_worker.setdefault(answer.worker, [])
        if not seen or seen[-1] != answer.version:
            seen.append(answer.version)
    return by_worker


def p99_ms(answers: list[Answer]) -> float:
    latencies = [a.latency_s for a in answers if a.ok]
    return float(np.percentile(latencies, 99) * 1000) if latencies else float("nan")
