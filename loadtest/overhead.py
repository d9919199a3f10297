"""What the serving path costs per request (`python -m loadtest overhead`), the near-free-model measurement.

`catdog serve` runs on one core (CPU 1) with tiny test models (tests/support/onnx_models.py: 32 px input,
inference about 0.05 ms) under saturating closed-loop load from the other core, posting one JPEG (default: the
bench's 640 x 480 photo). The server's CPU time per answered request (user + system, all threads, from /proc)
minus the CPU time per image of the same decode + preprocess + ONNX Runtime run in process, on the same core,
is the serving path: HTTP, routing, multipart, thread hand-offs, metrics, logs, response. CPU time, not wall
time, so that other work on a shared machine does not count.

With --keys the same is measured with access control on as well (CATDOG_API_KEYS_FILE with three keys, every
request carrying `Authorization: Bearer <key>`), alternating with the run without it.

With --baseline-rev REV the same is measured for `catdog serve` of that git revision (a git worktree, the same
venv), alternating with this tree's, --repeat times each. With --tracing this tree is also measured with
CATDOG_TRACING on, sampling every request (1.0) and one in a hundred (0.01), exporting over OTLP/gRPC to a
receiver in this process (tests/support/otlp.py, on the client's cores), alternating with the others.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from loadtest import loadgen
from loadtest.bench import REPO_ROOT, make_images, process_cpu_s, server, worktree
from loadtest.ports import free_port

# The in-process side, for this tree's layout and for the flat one of revisions before service/dataplane/.
_LIMIT = r"""
import sys, time
from pathlib import Path
if Path("service/dataplane").is_dir():
    from service.dataplane.card import ModelCard
    from service.dataplane.imaging import ImageLimits, load_tensor
    from service.dataplane.runtime import CPU, OnnxModel
else:
    from service.card import ModelCard
    from service.imaging import ImageLimits, load_tensor
    from service.runtime import CPU, OnnxModel
folder, model, image, seconds = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
card = ModelCard.load(folder / model / "model.json")
runtime = OnnxModel(folder / model / card.onnx.file, input_name=card.input.name, output_name=card.output.name,
                    providers=[CPU], intra_op_threads=1)
data, limits = image.read_bytes(), ImageLimits(64 << 20, 100_000_000)
def one():
    runtime.run(load_tensor(data, card.preprocessing, card.input, limits)[0][None])
for _ in range(20):
    one()
n, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
while time.perf_counter() - wall0 < seconds:
    one()
    n += 1
print((time.process_time() - cpu0) / n * 1000)
"""


def limit_cpu_ms(cwd: Path, models: Path, model: str, image: Path, cpu: str, seconds: float) -> float:
    cmd = ["taskset", "-c", cpu, sys.executable, "-c", _LIMIT, str(models), model, str(image), str(seconds)]
    out = subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def measure(
    cwd: Path,
    models: Path,
    args: argparse.Namespace,
    extra_env: dict[str, str] | None = None,
    keys: tuple[Path, str] | None = None,
) -> dict[str, Any]:
    env = {
        **(extra_env or {}),
        "CATDOG_MODEL_DIR": str(models),
        "CATDOG_LOG_LEVEL": "info",  # the access line is part of the serving path
        "CATDOG_INTRA_OP_THREADS": "1",
        "CATDOG_GRPC_PORT": str(free_port()),
    }
    headers = {}
    if keys is not None:
        env["CATDOG_API_KEYS_FILE"] = str(keys[0])
        headers["Authorization"] = f"Bearer {keys[1]}"
    cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    limit = limit_cpu_ms(cwd, models, args.model, args.image, args.server_cpu, args.seconds / 2)
    with server(cmd, env, args.server_cpu, cwd=cwd) as (url, proc, _):
        image = args.image.read_bytes()
        reqs = [loadgen.multipart_request(url, f"/predict/{args.model}", image, args.image.name, headers)]
        asyncio.run(loadgen.closed_loop(url, reqs, args.concurrency, 1.0, warmup_s=0.5))
        cpu0 = process_cpu_s(proc.pid)
        run = asyncio.run(loadgen.closed_loop(url, reqs, args.concurrency, args.seconds, warmup_s=0.0))
        per_request = (process_cpu_s(proc.pid) - cpu0) * 1000 / max(run.completed, 1)
    return {
        "rps": round(run.rps, 1),
        "errors": run.errors,
        "server_cpu_ms_per_request": round(per_request, 3),
        "in_process_cpu_ms_per_image": round(limit, 3),
        "serving_path_cpu_ms": round(per_request - limit, 3),
    }


@contextlib.contextmanager
def _receiver(cpus: str) -> Iterator[Any]:
    """tests/support/otlp.py's counting OTLP receiver as a child process (its stdout says its ports)."""
    cmd = ["taskset", "-c", cpus, sys.executable, "-m", "tests.support.otlp"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(10)


def door_cost_us(keys: tuple[Path, str], calls: int = 100_000) -> dict[str, float]:
    """The REST access door alone, in process on this core: CPU microseconds per call of AccessMiddleware in
    front of an app that does nothing, keys off and keys on (a valid key among three), minus the bare call."""
    from prometheus_client import CollectorRegistry

    from service.rest.access import AccessMiddleware, PathScopes
    from service.security.authorizer import AccessMetrics, Authorizer

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    head = [(b"host", b"x"), (b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"30000")]

    async def per_call(handler: Any, headers: list[tuple[bytes, bytes]]) -> float:
        scope = {"type": "http", "method": "POST", "path": "/predict/pretrained", "root_path": "", "headers": headers}
        for _ in range(1000):
            await handler(dict(scope, state={"access": {}}), None, None)
        started = time.process_time()
        for _ in range(calls):
            await handler(dict(scope, state={"access": {}}), None, None)
        return (time.process_time() - started) / calls * 1e6

    def door(path: Path | None) -> Any:
        authorizer = Authorizer.from_file(path, 2.0, AccessMetrics(CollectorRegistry()))
        return AccessMiddleware(app, authorizer=authorizer, scopes=PathScopes("/metrics", "/docs"))

    bare = asyncio.run(per_call(app, head))
    off = asyncio.run(per_call(door(None), head))
    on = asyncio.run(per_call(door(keys[0]), [*head, (b"authorization", f"Bearer {keys[1]}".encode())]))
    return {"door_keys_off_us": round(off - bare, 2), "door_keys_on_us": round(on - bare, 2)}


def _keys_file(folder: Path) -> tuple[Path, str]:
    """A keys file of three keys (the one used is matched against every entry, as always) and the key to send."""
    from service.security.keys import Scope, new_key

    made = [
        new_key(name, [scope])
        for name, scope in (("bench", Scope.INFER), ("ops", Scope.ADMIN), ("prom", Scope.METRICS))
    ]
    path = folder / "keys.json"
    path.write_text(json.dumps({"keys": [entry for _, entry in made]}))
    return path, made[0][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=None, help="default: the bench's 640 x 480 JPEG")
    parser.add_argument("--model", default="pretrained", help="a model of the tiny test repository")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--server-cpu", default="1")
    parser.add_argument("--client-cpus", default="0")
    parser.add_argument("--baseline-rev", default=None, help="also measure this git revision, alternately")
    parser.add_argument("--tracing", action="store_true", help="also this tree with tracing on at 1.0 and 0.01")
    parser.add_argument("--keys", action="store_true", help="also measure this tree with API keys on, alternately")
    args = parser.parse_args(argv)
    args.image = args.image or make_images(Path(tempfile.gettempdir()) / "catdog-bench-images")["small"][0]
    os.sched_setaffinity(0, [int(c) for c in args.client_cpus.split(",")])
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    sys.path.insert(0, str(REPO_ROOT))
    from tests.support.onnx_models import write_test_repository

    results: dict[str, list[dict[str, Any]]] = {}
    with contextlib.ExitStack() as stack:
        models = write_test_repository(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        trees: dict[str, tuple[Path, dict[str, str]]] = {"now": (REPO_ROOT, {})}
        if args.baseline_rev:
            trees[args.baseline_rev] = (stack.enter_context(worktree(args.baseline_rev)), {})
        runs: list[tuple[str, Path, dict[str, str], tuple[Path, str] | None]] = [
            (name, cwd, env, None) for name, (cwd, env) in trees.items()
        ]
        receiver = None
        if args.tracing:
            # The receiver runs in a process of its own on the client's cores (with its gRPC server in this
            # process, the first measurement hung before starting a server).
            receiver = stack.enter_context(_receiver(args.client_cpus))
            exporting = {
                "CATDOG_TRACING": "true",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.stdout.readline().split()[0]}",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            }  # the SDK's own export schedule (OTEL_BSP_*), as in production
            for ratio in ("1.0", "0.01"):
                sampler = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio}
                runs.append((f"tracing@{ratio}", REPO_ROOT, {**exporting, **sampler}, None))
        if args.keys:
            made = _keys_file(Path(stack.enter_context(tempfile.TemporaryDirectory())))
            runs.append(("now+keys", REPO_ROOT, {}, made))
            os.sched_setaffinity(0, [int(args.server_cpu)])  # the door alone, on the server's core
            print("door", json.dumps(door_cost_us(made)), flush=True)
            os.sched_setaffinity(0, [int(c) for c in args.client_cpus.split(",")])
        for _ in range(args.repeat):
            for name, cwd, extra_env, keys in runs:
                row = measure(cwd, models, args, extra_env, keys)
                results.setdefault(name, []).append(row)
                print(name, json.dumps(row), flush=True)
        if receiver is not None:
            receiver.stdin.close()
            print(f"spans received: {receiver.stdout.readline().strip()}")
    for name, rows in results.items():
        spans = {k: (min(r[k] for r in rows), max(r[k] for r in rows)) for k in rows[0] if k != "errors"}
        print(f"{name}: " + ", ".join(f"{k} {lo:g}-{hi:g}" for k, (lo, hi) in spans.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
