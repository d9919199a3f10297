"""Load for the Open Inference Protocol paths of the benchmark (docs/benchmarks.md): pre-built REST requests in
Triton's binary-data extension (sent by loadgen's raw HTTP/1.1 connections, like /predict's), and a closed-loop
gRPC client on grpc.aio sending pre-built ModelInferRequests (`raw_input_contents`) over one channel.

The gRPC client runs as its own process (`python -m loadtest.oip_loadgen TARGET MODEL IMAGE...`, one JSON line
out): `python -m loadtest` imports Locust, whose gevent monkey-patching deadlocks grpc's threads."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import grpc

from loadtest.loadgen import Result, record, run_users
from service.grpc import inference_pb2 as pb
from service.grpc import inference_pb2_grpc as pb_grpc


def binary_infer_request(url: str, model: str, image: bytes) -> bytes:
    """One complete POST /v2/models/{model}/infer: JSON header + the image as a length-prefixed BYTES element,
    binary outputs, as tritonclient.http sends it."""
    element = len(image).to_bytes(4, "little") + image
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": len(element)}}
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    body = header + element
    head = (
        f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {urlsplit(url).netloc}\r\n"
        f"Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {len(header)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def grpc_infer_request(model: str, image: bytes) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name="image", datatype="BYTES", shape=[1])
    request.raw_input_contents.append(len(image).to_bytes(4, "little") + image)
    return request


async def grpc_closed_loop(
    target: str, requests: list[pb.ModelInferRequest], concurrency: int, seconds: float, warmup_s: float = 1.0
) -> Result:
    """`concurrency` calls in flight at all times on one HTTP/2 channel (as tritonclient.grpc uses one)."""
    result = Result()
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        start = time.perf_counter()
        measure_from = start + warmup_s
        stop_at = measure_from + seconds

        async def user(index: int) -> None:
            i = index
            while (now := time.perf_counter()) < stop_at:
                try:
                    await stub.ModelInfer(requests[i % len(requests)], timeout=60)
                    ok = True
                except grpc.aio.AioRpcError:
                    ok = False
                i += 1
                record(result, now, measure_from, ok=ok)

        return await run_users([user(i) for i in range(concurrency)], warmup_s, result)


def grpc_saturation(target: str, model: str, images: list[Path], concurrency: int, seconds: float) -> dict[str, float]:
    """grpc_closed_loop in a fresh interpreter (no gevent); its Result.summary()."""
    cmd = [sys.executable, "-m", "loadtest.oip_loadgen", target, model, *map(str, images)]
    cmd += ["--concurrency", str(concurrency), "--seconds", str(seconds)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=seconds + 120).stdout
    summary: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="closed-loop gRPC ModelInfer load; prints one JSON summary")
    parser.add_argument("target")
    parser.add_argument("model")
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args(argv)
    requests = [grpc_infer_request(args.model, path.read_bytes()) for path in args.images]
    result = asyncio.run(grpc_closed_loop(args.target, requests, args.concurrency, args.seconds))
    print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
