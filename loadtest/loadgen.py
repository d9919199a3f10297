"""A small, cheap HTTP/1.1 load generator for the benchmark: asyncio streams, keep-alive connections and
pre-built request bytes, so one core drives far more requests per second than one server core can answer
(Locust's Python users cost several times more CPU per request). Closed loop (N connections, each sends its
next request when the last answer arrives) for saturation; open loop (requests at a fixed rate, whatever the
answers do) for latency at a given load. It reports its own CPU use, so a run can show it was not the
bottleneck."""

from __future__ import annotations

import asyncio
import resource
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np


def multipart_request(
    url: str, path: str, image: bytes, filename: str = "image.jpg", headers: dict[str, str] | None = None
) -> bytes:
    """One complete POST with the image as multipart field `file`, as browsers and `curl -F` send it."""
    host = urlsplit(url).netloc
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n"
        + "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        + "\r\n"
    ).encode()
    return head + body


@dataclass
class Result:
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    completed: int = 0  # answered 200, warm-up included (the span a server-side CPU reading covers)
    server_cpu_s: float = 0.0  # set by callers that read the server's CPU time around the run

    @property
    def server_cpu_ms(self) -> float:
        """The server's CPU ms per answered request (0 when not measured)."""
        return round(self.server_cpu_s * 1000 / self.completed, 3) if self.completed and self.server_cpu_s else 0.0

    @property
    def rps(self) -> float:
        return len(self.latencies_s) / self.elapsed_s if self.elapsed_s else 0.0

    def quantile_ms(self, q: float) -> float:
        return float(np.quantile(self.latencies_s, q) * 1000) if self.latencies_s else float("nan")

    def summary(self) -> dict[str, float]:
        return {
            "rps": round(self.rps, 2),
            "p50_ms": round(self.quantile_ms(0.5), 2),
            "p95_ms": round(self.quantile_ms(0.95), 2),
            "p99_ms": round(self.quantile_ms(0.99), 2),
            "requests": len(self.latencies_s),
            "errors": self.errors,
            "client_cpu_share": round(self.cpu_s / self.elapsed_s, 3) if self.elapsed_s else 0.0,
            **({"server_cpu_ms_per_request": self.server_cpu_ms} if self.server_cpu_s else {}),
        }


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self, request: bytes) -> int:
        """Send one request and read the whole answer; returns the status code."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


async def closed_loop(
    url: str, requests: list[bytes], concurrency: int, seconds: float, warmup_s: float = 1.0
) -> Result:
    """`concurrency` connections, each with one request in flight at all times."""
    parts = urlsplit(url)
    result = Result()
    start = time.perf_counter()
    measure_from = start + warmup_s
    stop_at = measure_from + seconds

    async def user(index: int) -> None:
        conn = _Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        i = index
        try:
            while (now := time.perf_counter()) < stop_at:
                try:
                    status = await conn.send(requests[i % len(requests)])
                except (OSError, asyncio.IncompleteReadError):
                    status = 0
                    conn.close()
                i += 1
                result.completed += status == 200
                record(result, now, measure_from, ok=status == 200)
        finally:
            conn.close()

    return await run_users([user(i) for i in range(concurrency)], warmup_s, result)


def record(result: Result, started: float, measure_from: float, *, ok: bool) -> None:
    """One answer of a closed loop, begun at `started`: its latency if it was OK, else an error; answers begun in
    the warm-up (before `measure_from`) are not counted."""
    if started >= measure_from:
        if ok:
            result.latencies_s.append(time.perf_counter() - started)
        else:
            result.errors += 1


async def run_users(users: list[Coroutine[Any, Any, None]], warmup_s: float, result: Result) -> Result:
    """Run a closed loop's users; wall and this process's CPU time are counted from the end of the warm-up until
    the last user stops."""
    tasks = [asyncio.create_task(u) for u in users]
    await asyncio.sleep(warmup_s)
    cpu0, t0 = _cpu(), time.perf_counter()
    await asyncio.gather(*tasks)
    result.elapsed_s = time.perf_counter() - t0
    result.cpu_s = _cpu() - cpu0
    return result


async def open_loop(url: str, requests: list[bytes], rate: float, seconds: float, max_conns: int = 64) -> Result:
    """Requests start at `rate` per second on a fixed schedule; latency counts from the scheduled start, so a
    server that falls behind shows it (no coordinated omission)."""
    parts = urlsplit(url)
    result = Result()
    idle: list[_Connection] = [_Connection(parts.hostname or "127.0.0.1", parts.port or 80) for _ in range(max_conns)]
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int, scheduled: float) -> None:
        conn = idle.pop() if idle else _Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            status = await conn.send(requests[i % len(requests)])
        except (OSError, asyncio.IncompleteReadError):
            status = 0
            conn.close()
        if status == 200:
            result.latencies_s.append(time.perf_counter() - scheduled)
        else:
            result.errors += 1
        idle.append(conn)

    cpu0, t0 = _cpu(), time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i, scheduled))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    result.elapsed_s = time.perf_counter() - t0
    result.cpu_s = _cpu() - cpu0
    for conn in idle:
        conn.close()
    return result


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
