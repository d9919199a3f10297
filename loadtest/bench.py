"""The benchmark harness (`make bench`): in one run, on this machine, with the server pinned to some cores and
this process (the load generator) pinned to the others, it measures for each model x {small, large} JPEG:

1. limit  - the same decode + preprocess + ONNX Runtime work in a tight in-process loop on the server's cores;
2. catdog - `catdog serve` under saturating closed-loop load: images/s, p50/p95/p99; one request at a time
            (single-request latency); open-loop load at half the saturated rate (p99 at half saturation);
3. naive  - loadtest/naive_server.py (the seed's design) under the same saturating load;

with --baseline-rev REV, also `catdog serve` of that git revision (a `git worktree` of it, the same venv, models
and images), measured alternately with this tree's in each cell: the before/after ratio comes from one run;

then prints catdog/limit and catdog/naive, cold start (process start -> /readyz 200), resident memory with
both models loaded, and the server-side breakdown scraped from /metrics. Results go to --out as JSON and
Markdown. Numbers on a shared 2-core machine are noisy: compare the ratios, which come from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from loadtest import loadgen, oip_loadgen
from loadtest.metrics import breakdown, scrape
from loadtest.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("cat-cat.webp", "dog-dog.webp")
SIZES = {"small": (640, 480), "large": (3464, 2598)}  # 0.31 MP and 9.0 MP


def make_images(out: Path) -> dict[str, list[Path]]:
    """JPEGs re-encoded (quality 90) from real photos in data/images: a cat and a dog at each size."""
    out.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[Path]] = {}
    for size_name, size in SIZES.items():
        for photo in PHOTOS:
            path = out / f"{Path(photo).stem}-{size_name}.jpg"
            if not path.exists():
                buffer = io.BytesIO()
                image = Image.open(REPO_ROOT / "data" / "images" / photo).convert("RGB")
                image.resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
                path.write_bytes(buffer.getvalue())
            found.setdefault(size_name, []).append(path)
    return found


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(urllib.error.URLError, OSError):
            response = urllib.request.urlopen(url + "/readyz", timeout=1)  # noqa: S310 (http to our own child)
            response.close()
            if response.status == 200:
                return time.perf_counter() - started
        time.sleep(0.01)
    raise TimeoutError("server did not become ready")


def process_memory_mb(pid: int) -> dict[str, float]:
    """Resident and peak resident memory of a process, in MiB (from /proc/<pid>/status)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": round(fields.get("VmRSS", 0.0), 1), "peak_rss_mb": round(fields.get("VmHWM", 0.0), 1)}


@contextlib.contextmanager
def server(
    cmd: list[str], env: dict[str, str], cpus: str, cwd: Path = REPO_ROOT, *, stop_timeout_s: float = 20.0
) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    """A server process pinned to `cpus`, started in `cwd` (`python -m service` imports the package found there);
    `{port}` in `cmd` becomes a free port. On exit: SIGTERM, then SIGKILL after `stop_timeout_s`."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full = ["taskset", "-c", cpus, *[c.replace("{port}", str(port)) for c in cmd]]
    started = time.perf_counter()
    proc = subprocess.Popen(full, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.DEVNULL)
    try:
        _wait_ready(url, proc)
        yield url, proc, time.perf_counter() - started
    finally:
        proc.terminate()
        try:
            proc.wait(stop_timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()


def limit(
    model_dir: Path, model: str, images: list[Path], cpus: str, threads: int, seconds: float, precision: str = "auto"
) -> float:
    """The in-process limit on the same images, in the same turn, as the servers' load (loadtest/bench_limit.py)."""
    cmd = ["taskset", "-c", cpus, sys.executable, "-m", "loadtest.bench_limit", str(model_dir), model]
    cmd += [str(image) for image in images]
    cmd += ["--seconds", str(seconds), "--threads", str(threads), "--precision", precision]
    out = subprocess.run(cmd, cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["images_per_s"])


@contextlib.contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A detached `git worktree` of `rev` (any commit-ish), removed afterwards."""
    commit = subprocess.run(
        ["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=REPO_ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()
    path = Path(tempfile.mkdtemp(prefix=f"catdog-{commit[:7]}-"))
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(path), commit], cwd=REPO_ROOT, check=True, capture_output=True
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(path)], cwd=REPO_ROOT, check=False, capture_output=True
        )


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used: per request, what a server costs on a shared
    machine whatever else runs there (wall-clock rates count the time other work held the core)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def saturate(url: str, pid: int, reqs: list[bytes], concurrency: int, seconds: float) -> loadgen.Result:
    """A closed-loop saturation run, with the server's CPU time over it."""
    cpu0 = process_cpu_s(pid)
    result = asyncio.run(loadgen.closed_loop(url, reqs, concurrency, seconds))
    result.server_cpu_s = process_cpu_s(pid) - cpu0
    return result


def start_baseline(
    stack: contextlib.ExitStack, rev: str, env: dict[str, str], cpus: str, models: list[str] | None = None
) -> tuple[str, str, subprocess.Popen[bytes]]:
    """`catdog serve` of revision `rev` on `cpus`, with this tree's venv and settings, and this tree's models or,
    given `models`, those of the revision's own models/ (its shipped cards and files: a card change is measured
    as users get it, each side with its own defaults)."""
    path = stack.enter_context(worktree(rev))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, check=True, capture_output=True, text=True)
    if models is not None:
        own = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="catdog-baseline-models-")))
        for name in models:
            (own / name).symlink_to(path / "models" / name, target_is_directory=True)
        env = {**env, "CATDOG_MODEL_DIR": str(own)}
    cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    url, proc, _ = stack.enter_context(server(cmd, {**env, "CATDOG_GRPC_PORT": str(free_port())}, cpus, cwd=path))
    return url, commit.stdout.strip(), proc


def requests_for(url: str, path: str, images: list[Path]) -> list[bytes]:
    return [loadgen.multipart_request(url, path, p.read_bytes(), p.name) for p in images]


def run(args: argparse.Namespace) -> dict[str, Any]:
    model_dir = args.model_dir.resolve()
    models = sorted(p.parent.name for p in model_dir.glob("*/model.json"))
    images = make_images(args.images)
    n_server = len(_parse_cpus(args.server_cpus))
    env = {
        "CATDOG_MODEL_DIR": str(model_dir),
        "CATDOG_LOG_LEVEL": "warning",
        "CATDOG_INTRA_OP_THREADS": str(args.threads or n_server),
        "CATDOG_BATCH_MAX_SIZE": str(args.batch_max_size),
        "CATDOG_BATCH_MAX_WAIT_MS": str(args.batch_max_wait_ms),
        "CATDOG_PRECISION": args.precision,
    }
    results: dict[str, Any] = {
        "machine": _machine(),
        "server_cpus": args.server_cpus,
        "client_cpus": args.client_cpus,
        "settings": env,
        "cells": {},
    }
    cells: dict[str, dict[str, Any]] = results["cells"]
    catdog_cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    grpc_target = f"127.0.0.1:{free_port()}"  # the Open Inference Protocol over gRPC, measured beside /predict
    catdog_env = {**env, "CATDOG_GRPC_PORT": grpc_target.rsplit(":", 1)[1]}
    stack = contextlib.ExitStack()  # the baseline revision's server, if asked for, runs beside this tree's
    baseline_url, baseline_proc = None, None
    if args.baseline_rev:
        own = models if args.baseline_models == "own" else None
        baseline_url, results["baseline_commit"], baseline_proc = start_baseline(
            stack, args.baseline_rev, env, args.server_cpus, own
        )
    with stack, server(catdog_cmd, catdog_env, args.server_cpus) as (url, proc, cold):
        results["cold_start_s"] = round(cold, 3)
        results["memory_after_start"] = process_memory_mb(proc.pid)
        for model in models:
            for size, paths in images.items():
                cell = cells.setdefault(f"{model}/{size}", {"model": model, "size": size})
                reqs = requests_for(url, f"/predict/{model}", paths)
                oip_reqs = [oip_loadgen.binary_infer_request(url, model, p.read_bytes()) for p in paths]
                oip_rest: list[loadgen.Result] = []
                oip_grpc: list[dict[str, float]] = []
                # Limit and saturation alternate, best of --repeat each: other work on a shared machine only
                # ever slows a run down, so the best run is the closest to what the cores can do.
                limits, sats = [], []
                base_runs: list[loadgen.Result] = []
                for _ in range(args.repeat):
                    threads = args.threads or n_server
                    limits.append(
                        limit(model_dir, model, paths, args.server_cpus, threads, args.seconds, args.precision)
                    )
                    before = scrape(url)
                    sat = saturate(url, proc.pid, reqs, args.concurrency, args.seconds)
                    sats.append((sat, breakdown(before, scrape(url)).get(model, {})))
                    if baseline_url is not None and baseline_proc is not None:
                        base_reqs = requests_for(baseline_url, f"/predict/{model}", paths)
                        base_runs.append(
                            saturate(baseline_url, baseline_proc.pid, base_reqs, args.concurrency, args.seconds)
                        )
                    # The same images through the Open Inference Protocol: REST binary and gRPC, same load.
                    oip_rest.append(asyncio.run(loadgen.closed_loop(url, oip_reqs, args.concurrency, args.seconds)))
                    oip_grpc.append(
                        oip_loadgen.grpc_saturation(grpc_target, model, paths, args.concurrency, args.seconds)
                    )
                sat, cell["server_breakdown"] = max(sats, key=lambda pair: pair[0].rps)
                cell["limit_ips"] = round(max(limits), 2)
                cell["limit_runs"] = [round(x, 2) for x in limits]
                cell["catdog_runs"] = [round(s.rps, 2) for s, _ in sats]
                cell["catdog_cpu_ms"] = min(s.server_cpu_ms for s, _ in sats)  # the least disturbed run
                cell["catdog"] = sat.summary()
                if baseline_url is not None:
                    cell["baseline"] = max(base_runs, key=lambda r: r.rps).summary()
                    cell["baseline_runs"] = [round(r.rps, 2) for r in base_runs]
                    cell["baseline_cpu_ms"] = min(r.server_cpu_ms for r in base_runs)
                    base_reqs = requests_for(baseline_url, f"/predict/{model}", paths)
                    base_single = asyncio.run(loadgen.closed_loop(baseline_url, base_reqs, 1, args.seconds / 2, 0.5))
                    cell["baseline_single"] = base_single.summary()
                cell["oip_rest"] = max(oip_rest, key=lambda r: r.rps).summary()
                cell["oip_grpc"] = max(oip_grpc, key=lambda r: r["rps"])
                cell["oip_rest_runs"] = [round(r.rps, 2) for r in oip_rest]
                cell["oip_grpc_runs"] = [r["rps"] for r in oip_grpc]
                single = asyncio.run(loadgen.closed_loop(url, reqs, 1, args.seconds / 2, warmup_s=0.5))
                cell["single"] = single.summary()
                half = asyncio.run(loadgen.open_loop(url, reqs, max(sat.rps / 2, 0.5), args.seconds))
                cell["half_saturation"] = half.summary()
                print(f"catdog {model}/{size}: {json.dumps(cell)}", file=sys.stderr, flush=True)
        results["memory_after_load"] = process_memory_mb(proc.pid)
    naive_cmd = [sys.executable, "-m", "uvicorn", "loadtest.naive_server:app", "--host", "127.0.0.1"]
    naive_cmd += ["--port", "{port}", "--log-level", "warning", "--no-access-log"]
    with server(naive_cmd, {"CATDOG_MODEL_DIR": str(model_dir)}, args.server_cpus) as (url, _, _):
        for model in models:
            for size, paths in images.items():
                reqs = requests_for(url, f"/predict/{model}", paths)
                runs = [
                    asyncio.run(loadgen.closed_loop(url, reqs, args.concurrency, args.seconds))
                    for _ in range(args.repeat)
                ]
                naive = max(runs, key=lambda r: r.rps)
                cells[f"{model}/{size}"]["naive"] = naive.summary()
                print(f"naive {model}/{size}: {json.dumps(naive.summary())}", file=sys.stderr, flush=True)
    for cell in cells.values():
        rps = cell["catdog"]["rps"]
        cell["catdog_over_limit"] = round(rps / cell["limit_ips"], 3) if cell["limit_ips"] else None
        cell["catdog_over_naive"] = round(rps / cell["naive"]["rps"], 2) if cell["naive"]["rps"] else None
        cell["p99_half_over_single_p50"] = round(cell["half_saturation"]["p99_ms"] / cell["single"]["p50_ms"], 2)
        if "baseline" in cell:
            cell["catdog_over_baseline"] = round(rps / cell["baseline"]["rps"], 3) if cell["baseline"]["rps"] else None
            cpu = cell["catdog_cpu_ms"]
            cell["baseline_cpu_over_catdog"] = round(cell["baseline_cpu_ms"] / cpu, 3) if cpu else None
        for path in ("oip_rest", "oip_grpc"):
            cell[f"{path}_over_predict"] = round(cell[path]["rps"] / rps, 3) if rps else None
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Server on CPU {results['server_cpus']}, load generator on CPU {results['client_cpus']}; "
        f"cold start {results['cold_start_s']} s; "
        "RSS with all models loaded "
        f"{results['memory_after_start']['rss_mb']} MB after start, "
        f"{results['memory_after_load']['rss_mb']} MB after the run "
        f"(peak {results['memory_after_load']['peak_rss_mb']} MB).",
        "",
        "| model / JPEG | limit img/s | catdog img/s | naive img/s | catdog/limit | catdog/naive "
        "| catdog p50 / p95 / p99 ms | single p50 ms | p99 @ half sat. ms | p99 half / single | gen CPU |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for key, c in results["cells"].items():
        cat, half, single = c["catdog"], c["half_saturation"], c["single"]
        lines.append(
            f"| {key} | {c['limit_ips']:.1f} | {cat['rps']:.1f} | {c['naive']['rps']:.1f} "
            f"| {c['catdog_over_limit']:.2f} "
            f"| {c['catdog_over_naive']:.2f} | {cat['p50_ms']:.0f} / {cat['p95_ms']:.0f} / {cat['p99_ms']:.0f} "
            f"| {single['p50_ms']:.1f} | {half['p99_ms']:.1f} | {c['p99_half_over_single_p50']:.2f} "
            f"| {cat['client_cpu_share']:.0%} |"
        )
    lines += ["", "The Open Inference Protocol on the same images and load (REST binary extension, gRPC raw):", ""]
    lines += ["| model / JPEG | /predict img/s | v2 REST img/s | gRPC img/s | REST/predict | gRPC/predict "]
    lines[-1] += "| REST p50 / p99 ms | gRPC p50 / p99 ms | gRPC gen CPU |"
    lines += ["| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
    for key, c in results["cells"].items():
        rest, grpc_ = c["oip_rest"], c["oip_grpc"]
        lines.append(
            f"| {key} | {c['catdog']['rps']:.1f} | {rest['rps']:.1f} | {grpc_['rps']:.1f} "
            f"| {c['oip_rest_over_predict']:.3f} | {c['oip_grpc_over_predict']:.3f} "
            f"| {rest['p50_ms']:.0f} / {rest['p99_ms']:.0f} | {grpc_['p50_ms']:.0f} / {grpc_['p99_ms']:.0f} "
            f"| {grpc_['client_cpu_share']:.0%} |"
        )
    if "baseline_commit" in results:
        lines += ["", f"Against {results['baseline_commit'][:7]} (`--baseline-rev`), same run, same load:", ""]
        lines += [
            "| model / JPEG | baseline img/s | catdog img/s | catdog / baseline | server CPU ms per request "
            "baseline / now | baseline CPU / now | single p50 ms baseline / now |"
        ]
        lines += ["| --- | ---: | ---: | ---: | --- | ---: | --- |"]
        for key, c in results["cells"].items():
            lines.append(
                f"| {key} | {c['baseline']['rps']:.1f} | {c['catdog']['rps']:.1f} | {c['catdog_over_baseline']:.2f} "
                f"| {c['baseline_cpu_ms']:.2f} / {c['catdog_cpu_ms']:.2f} | {c['baseline_cpu_over_catdog']:.2f} "
                f"| {c['baseline_single']['p50_ms']:.1f} / {c['single']['p50_ms']:.1f} |"
            )
        lines += [
            "",
            "Server CPU per request (user + system, all threads, from /proc) is the robust figure on a shared machine:",
            "1000 / it is the img/s one dedicated core would give; the wall-clock img/s above count time other work",
            "held the core.",
        ]
    lines += ["", "Server-side means under saturation (from /metrics, this run only):", ""]
    lines += ["| model / JPEG | request ms | preprocess ms | queue wait ms | inference ms | batch size |"]
    lines += ["| --- | ---: | ---: | ---: | ---: | ---: |"]
    for key, c in results["cells"].items():
        b = c.get("server_breakdown", {})
        lines.append(
            f"| {key} | {b.get('request_mean_ms', float('nan')):.1f} | {b.get('preprocess_mean_ms', float('nan')):.1f} "
            f"| {b.get('queue_wait_mean_ms', float('nan')):.1f} | {b.get('inference_mean_ms', float('nan')):.1f} "
            f"| {b.get('batch_size_mean', float('nan')):.2f} |"
        )
    return "\n".join(lines) + "\n"


def _parse_cpus(spec: str) -> list[int]:
    cpus: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        cpus += list(range(int(lo), int(hi or lo) + 1))
    return cpus


def _machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} x {model}, Python {sys.version.split()[0]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--server-cpus", default="1", help="taskset list for the servers and the limit loop")
    parser.add_argument("--client-cpus", default="0", help="taskset list for this process (the load generator)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per cell")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the best counts")
    parser.add_argument("--concurrency", type=int, default=4, help="closed-loop connections for saturation")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: one per server CPU)")
    parser.add_argument("--batch-max-size", type=int, default=1)
    parser.add_argument("--batch-max-wait-ms", type=float, default=0.0)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8"), help="CATDOG_PRECISION")
    parser.add_argument(
        "--baseline-rev",
        default=None,
        help="also measure `catdog serve` of this git revision (e.g. c62544f), alternately",
    )
    parser.add_argument(
        "--baseline-models",
        default="same",
        choices=("same", "own"),
        help="the baseline serves this tree's models (same) or its revision's own models/ (own: each side with "
        "its shipped cards, for a change of model or default precision)",
    )
    parser.add_argument("--images", type=Path, default=Path(tempfile.gettempdir()) / "catdog-bench-images")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "bench")
    args = parser.parse_args(argv)
    # SIGTERM unwinds like Ctrl-C: the servers are stopped and the baseline worktree removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.sched_setaffinity(0, _parse_cpus(args.client_cpus))
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out / "bench.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
