"""The overload benchmark (`make overload`): a crowd far beyond what the server can answer in time.

For each variant it starts `catdog serve` pinned to the server's core(s) with the shipped models, measures the
saturated throughput on the variant's images in the same run (`make bench`'s closed loop, 4 connections), then
lets `--clients` (600) clients loose at once for `--seconds`: each posts a JPEG, and posts again as soon as it
has an answer; a 503 client waits the `Retry-After` the server gave (as a well-behaved client or an ingress
retrying elsewhere would). It reports statuses, 504s, connection errors, refusal latency and accepted latency
(client-side, from the first byte sent to the last byte read), goodput (200s per second) over the saturated
throughput, the server's peak RSS (sampled every 50 ms and the kernel's VmHWM) and the worst probe latency
(/livez, /readyz, /metrics) during the crowd.

Variants: `large` (3464 x 2598 JPEGs, ~1.5 MB), `small` (640 x 480), `mixed` (half each), `two-models`
(the crowd on `pretrained`, a few closed-loop clients on `scratch`: the quiet model must still be served).

The clients are raw asyncio sockets that share one pre-built request per image (`loop.sock_sendall` sends
from it without copying), so 600 connections cost the load generator little. `--checkout DIR` serves the
code of another checkout (e.g. a `git worktree` of an older commit) to record a before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from loadtest import loadgen
from loadtest.bench import _parse_cpus, make_images, process_memory_mb, server

REPO_ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("large", "small", "mixed", "two-models")
# Like httpx (keepalive_expiry 5 s), an idle connection is not reused after this: uvicorn closes at 5 s.
KEEPALIVE_S = 4.0
EXPECT_WAIT_S = 1.0  # curl's CURLOPT_EXPECT_100_TIMEOUT_MS


@dataclass
class Outcome:
    """Everything the clients saw, in arrival order."""

    started: float = field(default_factory=time.perf_counter)
    done: list[tuple[float, int, float, str]] = field(default_factory=list)  # (finished, status, latency, model)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    retry_after: list[float] = field(default_factory=list)
    missing_retry_after: int = 0
    unfinished: int = 0

    def statuses(self, model: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, status, _, m in self.done:
            if model is None or m == model:
                counts[str(status)] = counts.get(str(status), 0) + 1
        if model is None:
            if self.errors:
                counts["connection_error"] = self.errors
            if self.unfinished:
                counts["unanswered"] = self.unfinished
        return dict(sorted(counts.items()))

    def latencies(self, status: int, model: str | None = None) -> list[float]:
        return [lat for _, s, lat, m in self.done if s == status and (model is None or m == model)]


def quantile_ms(values: list[float], q: float) -> float | None:
    return round(float(np.quantile(values, q)) * 1000, 1) if values else None


async def _read_response(sock: socket.socket, buffer: bytes = b"") -> tuple[int, dict[bytes, bytes], bytes]:
    """Read one response (head and Content-Length body); (status, lower-cased headers, bytes read past it)."""
    loop = asyncio.get_running_loop()
    while b"\r\n\r\n" not in buffer:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buffer += chunk
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0][9:12])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    while len(rest) < length:
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise ConnectionError("closed inside the response body")
        rest += chunk
    return status, headers, rest[length:]


async def exchange(sock: socket.socket, request: bytes, *, expect_continue: bool) -> tuple[int, dict[bytes, bytes]]:
    """Send one request, read one response; (status, lower-cased headers).

    With `expect_continue` the client announces its body (`Expect: 100-continue`, as curl does for uploads over
    1 MB) and sends it only after `100 Continue`, or after a second without an answer (curl's default wait); a
    final answer instead (a refusal) ends the exchange with no body sent. Without it, like httpx and requests,
    the whole body goes out before the answer is read.
    """
    loop = asyncio.get_running_loop()
    if not expect_continue:
        await loop.sock_sendall(sock, memoryview(request))
        status, headers, _ = await _read_response(sock)
        return status, headers
    split = request.index(b"\r\n\r\n") + 2
    await loop.sock_sendall(sock, request[:split] + b"Expect: 100-continue\r\n\r\n")
    leftover = b""
    try:
        status, headers, leftover = await asyncio.wait_for(_read_response(sock), EXPECT_WAIT_S)
    except TimeoutError:
        status, headers = 100, {}
    if status != 100:
        return status, headers
    await loop.sock_sendall(sock, memoryview(request)[split + 2 :])
    status, headers, _ = await _read_response(sock, leftover)
    return status, headers


def _reusable(sock: socket.socket) -> bool:
    """An idle keep-alive connection the server has not closed (what HTTP clients check before reuse)."""
    try:
        return bool(sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT))
    except BlockingIOError:
        return True  # nothing to read: still open
    except OSError:
        return False


async def _connect(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    return sock


async def crowd(
    url: str,
    requests: list[tuple[str, bytes]],
    clients: int,
    seconds: float,
    *,
    drain_s: float = 40.0,
    expect_continue: bool = False,
) -> Outcome:
    """`clients` closed-loop clients, all starting at once; each honours Retry-After on a 503. After `seconds`
    no new request starts; answers still outstanding get `drain_s` more (a 504 after 30 s is still counted)."""
    host, port = url.split("//")[1].split(":")
    outcome = Outcome()
    stop_at = time.perf_counter() + seconds

    async def client(index: int) -> None:
        sock: socket.socket | None = None
        idle_since = 0.0
        i = index
        try:
            while time.perf_counter() < stop_at:
                model, request = requests[i % len(requests)]
                i += 1
                sent = time.perf_counter()
                reused = False
                try:
                    if sock is not None and (sent - idle_since > KEEPALIVE_S or not _reusable(sock)):
                        sock.close()  # idle too long (the server's keep-alive is 5 s), or closed: reconnect
                        sock = None
                    reused = sock is not None
                    if sock is None:
                        sock = await _connect(host, int(port))
                    status, headers = await exchange(sock, request, expect_continue=expect_continue)
                except (OSError, ConnectionError, ValueError) as exc:
                    outcome.errors += 1
                    kind = f"{type(exc).__name__}{' (reused)' if reused else ''}"
                    outcome.error_kinds[kind] = outcome.error_kinds.get(kind, 0) + 1
                    if sock is not None:
                        sock.close()
                        sock = None
                    await asyncio.sleep(0.1)
                    continue
                now = idle_since = time.perf_counter()
                outcome.done.append((now, status, now - sent, model))
                if headers.get(b"connection") == b"close":
                    sock.close()
                    sock = None
                if status in (503, 429):
                    value = headers.get(b"retry-after")
                    if value is None:
                        outcome.missing_retry_after += 1
                        wait = 1.0
                    else:
                        wait = float(value)
                        outcome.retry_after.append(wait)
                    await asyncio.sleep(min(wait, max(0.0, stop_at - time.perf_counter())))
        finally:
            if sock is not None:
                sock.close()

    tasks = [asyncio.create_task(client(i)) for i in range(clients)]
    _, pending = await asyncio.wait(tasks, timeout=seconds + drain_s)
    outcome.unfinished = len(pending)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return outcome


async def quiet_clients(url: str, model: str, request: bytes, clients: int, seconds: float) -> Outcome:
    """A few closed-loop clients on a model nobody else uses (two-models variant)."""
    return await crowd(url, [(model, request)], clients, seconds, drain_s=10.0)


class Sampler:
    """The server's RSS every 50 ms and the probes' latency every 250 ms, in a process of its own: in a thread
    of this one, each probe would also wait for the GIL behind 600 clients' event loop, and report that."""

    def __init__(self, url: str, pid: int) -> None:
        self.url, self.pid = url, pid
        self.rss_mb: list[float] = []
        self.probe_s: dict[str, float] = {}
        self.probe_failures: list[str] = []
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=self._run, args=(send,), daemon=True)

    def start(self) -> None:
        self._process.start()

    def stop(self) -> None:
        self._stop.set()
        if self._receive.poll(15):
            self.rss_mb, self.probe_s, self.probe_failures = self._receive.recv()
        self._process.join(5)

    def _run(self, send: Connection) -> None:
        next_probe = 0.0
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                self.rss_mb.append(process_memory_mb(self.pid)["rss_mb"])
            if time.perf_counter() >= next_probe:
                next_probe = time.perf_counter() + 0.25
                for path in ("/livez", "/readyz", "/metrics"):
                    started = time.perf_counter()
                    try:
                        with urllib.request.urlopen(self.url + path, timeout=10) as response:  # noqa: S310
                            response.read()
                            ok = response.status == 200
                    except OSError as exc:
                        ok = False
                        self.probe_failures.append(f"{path}: {exc}")
                    took = time.perf_counter() - started
                    if ok:
                        self.probe_s[path] = max(self.probe_s.get(path, 0.0), took)
            time.sleep(0.05)
        send.send((self.rss_mb, self.probe_s, self.probe_failures))


@contextlib.contextmanager
def serve(checkout: Path, env: dict[str, str], cpus: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`catdog serve` of `checkout` (its package first on PYTHONPATH) pinned to `cpus`."""
    cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    python_path = os.pathsep.join(filter(None, [str(checkout), os.environ.get("PYTHONPATH")]))
    with server(cmd, {"PYTHONPATH": python_path, **env}, cpus, cwd=checkout, stop_timeout_s=30) as (url, proc, _):
        yield url, proc


def run_variant(args: argparse.Namespace, variant: str, images: dict[str, list[Path]]) -> dict[str, Any]:
    env = {
        "CATDOG_MODEL_DIR": str(args.model_dir.resolve()),
        "CATDOG_LOG_LEVEL": "warning",
        "CATDOG_INTRA_OP_THREADS": str(len(_parse_cpus(args.server_cpus))),
        **dict(item.split("=", 1) for item in args.env),
    }
    hot = "pretrained"
    with serve(args.checkout.resolve(), env, args.server_cpus) as (url, proc):

        def build(model: str, sizes: tuple[str, ...]) -> list[tuple[str, bytes]]:
            return [
                (model, loadgen.multipart_request(url, f"/predict/{model}", p.read_bytes(), p.name))
                for size in sizes
                for p in images[size]
            ]

        sizes = {"large": ("large",), "small": ("small",), "mixed": ("large", "small")}.get(variant, ("large",))
        requests = build(hot, sizes)
        random.Random(0).shuffle(requests)
        saturated = asyncio.run(loadgen.closed_loop(url, [r for _, r in requests], 4, args.reference_seconds))
        quiet_request = build("scratch", ("large",))[0][1] if variant == "two-models" else b""
        quiet_saturated = (
            asyncio.run(loadgen.closed_loop(url, [quiet_request], 4, args.reference_seconds)) if quiet_request else None
        )
        memory_before = process_memory_mb(proc.pid)
        sampler = Sampler(url, proc.pid)
        sampler.start()

        async def both() -> tuple[Outcome, Outcome | None]:
            jobs = [crowd(url, requests, args.clients, args.seconds, expect_continue=args.expect_continue)]
            if variant == "two-models":
                jobs.append(quiet_clients(url, "scratch", quiet_request, 2, args.seconds))
            results = await asyncio.gather(*jobs)
            return results[0], (results[1] if len(results) > 1 else None)

        outcome, quiet = asyncio.run(both())
        sampler.stop()
        memory_after = process_memory_mb(proc.pid)
    ok = outcome.latencies(200, hot)
    refused = outcome.latencies(503, hot)
    window = [t for t, s, _, m in outcome.done if s == 200 and m == hot and t - outcome.started >= args.warmup]
    span = args.seconds - args.warmup
    goodput = len([t for t in window if t - outcome.started <= args.seconds]) / span
    result: dict[str, Any] = {
        "variant": variant,
        "clients": args.clients,
        "seconds": args.seconds,
        "statuses": outcome.statuses(),
        "timeouts_504": outcome.statuses().get("504", 0),
        "connection_errors": outcome.errors,
        "connection_error_kinds": outcome.error_kinds,
        "unanswered": outcome.unfinished,
        "refusals_without_retry_after": outcome.missing_retry_after,
        "retry_after_s": sorted(set(outcome.retry_after)),
        "refusal_p50_ms": quantile_ms(refused, 0.5),
        "refusal_p99_ms": quantile_ms(refused, 0.99),
        "accepted_p50_ms": quantile_ms(ok, 0.5),
        "accepted_p99_ms": quantile_ms(ok, 0.99),
        "accepted_max_ms": quantile_ms(ok, 1.0),
        "goodput_rps": round(goodput, 2),
        "saturated_rps": round(saturated.rps, 2),
        "goodput_over_saturated": round(goodput / saturated.rps, 3) if saturated.rps else None,
        "rss_mb_before": memory_before["rss_mb"],
        "rss_mb_peak": max([*sampler.rss_mb, memory_after["peak_rss_mb"]]),
        "probe_max_ms": {k: round(v * 1000, 1) for k, v in sampler.probe_s.items()},
        "probe_failures": len(sampler.probe_failures),
    }
    if quiet is not None and quiet_saturated is not None:
        # The quiet model's answers use the core too: the share of the core's capacity that went to answers is
        # each model's goodput over its own saturated rate, summed (for one model it is goodput / saturated).
        quiet_window = [t for t, s, _, _ in quiet.done if s == 200 and args.warmup <= t - quiet.started <= args.seconds]
        quiet_goodput = len(quiet_window) / span
        result["capacity_used"] = round(goodput / saturated.rps + quiet_goodput / quiet_saturated.rps, 3)
        result["quiet_model"] = {
            "statuses": quiet.statuses(),
            "goodput_rps": round(quiet_goodput, 2),
            "saturated_rps": round(quiet_saturated.rps, 2),
            "p50_ms": quantile_ms(quiet.latencies(200), 0.5),
            "p99_ms": quantile_ms(quiet.latencies(200), 0.99),
        }
    return result


def markdown(results: list[dict[str, Any]], label: str) -> str:
    lines = [
        f"{label}: {results[0]['clients']} clients for {results[0]['seconds']:g} s per variant.",
        "",
        "| variant | statuses | 504 | conn. errors | refusal p99 ms | accepted p50 / p99 ms | goodput / saturated "
        "| RSS peak MB | worst probe ms |",
        "| --- | --- | ---: | ---: | ---: | --- | --- | ---: | ---: |",
    ]
    for r in results:
        statuses = ", ".join(f"{k}: {v}" for k, v in r["statuses"].items())
        probe = max(r["probe_max_ms"].values(), default=float("nan"))
        lines.append(
            f"| {r['variant']} | {statuses} | {r['timeouts_504']} | {r['connection_errors']} "
            f"| {r['refusal_p99_ms']} | {r['accepted_p50_ms']} / {r['accepted_p99_ms']} "
            f"| {r['goodput_rps']:.1f} / {r['saturated_rps']:.1f} = **{r['goodput_over_saturated']}** "
            f"| {r['rss_mb_peak']:.0f} | {probe:.0f} |"
        )
    for r in results:
        if "quiet_model" in r:
            q = r["quiet_model"]
            lines.append("")
            lines.append(
                f"two-models: the quiet model (`scratch`, 2 clients) got {q['statuses']}, "
                f"{q['goodput_rps']} / s against its saturated {q['saturated_rps']} / s "
                f"(share of the core's capacity spent on answers, both models: **{r['capacity_used']}**), "
                f"p50 {q['p50_ms']} ms, p99 {q['p99_ms']} ms while `pretrained` had the crowd."
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--clients", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the crowd keeps posting")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of the crowd left out of goodput")
    parser.add_argument("--reference-seconds", type=float, default=4.0, help="saturated run before the crowd")
    parser.add_argument(
        "--expect-continue",
        action="store_true",
        help="the crowd's clients send Expect: 100-continue and their body only when admitted (as curl does)",
    )
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--client-cpus", default="0")
    parser.add_argument("--checkout", type=Path, default=REPO_ROOT, help="serve the code of this checkout")
    parser.add_argument("--env", action="append", default=[], help="extra server setting, e.g. CATDOG_X=1")
    parser.add_argument("--images", type=Path, default=Path(tempfile.gettempdir()) / "catdog-bench-images")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "overload")
    parser.add_argument("--label", default="catdog")
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, _parse_cpus(args.client_cpus))
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    images = make_images(args.images)
    results = []
    for variant in args.variants.split(","):
        result = run_variant(args, variant.strip(), images)
        print(json.dumps(result), file=sys.stderr, flush=True)
        results.append(result)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.label}.json").write_text(json.dumps(results, indent=2))
    table = markdown(results, args.label)
    (args.out / f"{args.label}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
