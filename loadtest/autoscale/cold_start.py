"""Cold start in process: `python -m service` started on one core (taskset), timed from the process's start to
/readyz 200 and to its first answer, against warm answers of the same request. Several runs; the first answer's
extra time over a warm one is what a request that woke a scaled-to-zero deployment pays on top of start-up. CPU time
(user + system, all threads, /proc) is reported beside wall time: on a shared core other work stretches the wall
time, not the CPU time. CPU time is counted in clock ticks (10 ms)."""

from __future__ import annotations

import statistics
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from loadtest.bench import REPO_ROOT, process_cpu_s, server
from loadtest.ports import free_port

PHOTO = REPO_ROOT / "data" / "images" / "cat-cat.webp"


def _post(url: str, body: bytes, boundary: str) -> float:
    started = time.perf_counter()
    request = urllib.request.Request(  # noqa: S310 (our own child on loopback)
        url + "/predict/pretrained",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        response.read()
        assert response.status == 200
    return time.perf_counter() - started


def one_run(cpus: str, env: dict[str, str], warm_requests: int = 10) -> dict[str, float]:
    boundary = "catdogcoldstart"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{PHOTO.name}"\r\n'
            "Content-Type: image/webp\r\n\r\n"
        ).encode()
        + PHOTO.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    with server(cmd, env, cpus) as (url, proc, ready_s):
        cpu_ready = process_cpu_s(proc.pid)
        first = _post(url, body, boundary)
        cpu_first = process_cpu_s(proc.pid) - cpu_ready
        warm, cpu_warm = [], []
        for _ in range(warm_requests):
            before = process_cpu_s(proc.pid)
            warm.append(_post(url, body, boundary))
            cpu_warm.append(process_cpu_s(proc.pid) - before)
    return {
        "ready_s": round(ready_s, 3),
        "first_answer_ms": round(first * 1000, 1),
        "warm_median_ms": round(statistics.median(warm) * 1000, 1),
        "start_to_first_answer_s": round(ready_s + first, 3),
        # CPU time is what a dedicated core would take (other work on a shared core stretches only wall time).
        "cpu_s_to_ready": round(cpu_ready, 3),
        "first_answer_cpu_ms": round(cpu_first * 1000, 1),
        "warm_cpu_ms": round(sum(cpu_warm) / len(cpu_warm) * 1000, 1),
    }


def measure(runs: int, cpus: str, model_dir: Path) -> dict[str, Any]:
    results = []
    for i in range(runs):
        env = {"CATDOG_MODEL_DIR": str(model_dir), "CATDOG_LOG_LEVEL": "warning", "CATDOG_GRPC_PORT": str(free_port())}
        result = one_run(cpus, env)
        print(f"  run {i + 1}: {result}", flush=True)
        results.append(result)
    keys = results[0].keys()
    return {
        "runs": results,
        "median": {k: round(statistics.median(r[k] for r in results), 3) for k in keys},
        "cpus": cpus,
    }
