"""make bench-triton's own pieces (the run itself needs minutes of quiet CPU: docs/benchmarks.md): the input file
perf_analyzer reads, its CSV, and the table."""

from __future__ import annotations

import argparse
import base64
import json
import struct
from pathlib import Path

from loadtest import triton_perf

CSV = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency\n"
    "1,27.7945,97,4896,0,72062,61690,268,6,127025,169980,274589,283044\n"
)


def test_input_data_is_one_length_prefixed_image(tmp_path: Path) -> None:
    path = triton_perf.input_data(tmp_path / "in.json", b"\xff\xd8jpeg")
    raw = base64.b64decode(json.loads(path.read_text())["data"][0]["image"]["content"]["b64"])
    assert raw == struct.pack("<I", 6) + b"\xff\xd8jpeg"


def test_report_takes_the_csv_figures() -> None:
    [row] = triton_perf._parse_csv(CSV)
    args = argparse.Namespace(
        batch=1,
        size="small",
        model="pretrained",
        server_cpus="1",
        client_cpus="0",
        interval_ms=3000,
        stability=25,
        repeat=2,
    )
    failed = {"server": "pytriton", "protocol": "grpc", "concurrency": 1, "error": "no stable measurement"}
    text = triton_perf.report({("catdog", "grpc", 1): row, ("pytriton", "grpc", 1): failed}, args)
    assert "| catdog | grpc | 1 | 27.8 | 127.0 | 283.0 | 0 | 72062 | 61690 | 268 |" in text
    assert "| pytriton | grpc | 1 | failed: 'no stable measurement'" in text
