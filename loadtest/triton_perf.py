"""`make bench-triton` (python -m loadtest.triton_perf): Triton's own perf_analyzer, in its default mode, against
catdog and against Triton itself (PyTriton, as `make bench-peers` runs it), on the same model, JPEG and core.

Each round starts every server fresh under `taskset` on the server CPU (loadtest/peers: the same launch, the same
process-tree stop), runs perf_analyzer on the client CPU for each protocol and concurrency, and ends it; rounds
alternate (A B A B) and each figure is the best round's throughput (with that round's latencies). perf_analyzer
comes from scripts/install-perf-analyzer.sh. Results: --out/triton-perf.{md,json}.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from loadtest import bench
from loadtest.peers import procs
from loadtest.peers.cli import launch
from loadtest.peers.registry import contenders
from loadtest.ports import free_port

SERVERS = ("catdog", "pytriton")


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default=",".join(SERVERS), help="catdog,pytriton")
    parser.add_argument("--protocols", default="grpc,http")
    parser.add_argument("--concurrency", default="1,4", help="perf_analyzer concurrency levels")
    parser.add_argument("--batch", type=int, default=1, help="perf_analyzer -b (PyTriton without batching: 1)")
    parser.add_argument("--interval-ms", type=int, default=3000, help="perf_analyzer --measurement-interval")
    parser.add_argument(
        "--stability", type=int, default=10, help="perf_analyzer --stability-percentage (its default: 10)"
    )
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--size", default="small", choices=sorted(bench.SIZES))
    parser.add_argument("--server-cpus", default="1")
    parser.add_argument("--client-cpus", default="0")
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--model-dir", type=Path, default=bench.REPO_ROOT / "models")
    parser.add_argument("--precision", default="fp32", choices=["auto", "fp32", "int8"])
    parser.add_argument("--out", type=Path, default=bench.REPO_ROOT / "artifacts" / "triton-perf")
    args = parser.parse_args(argv)
    args.servers = args.servers.split(",")
    args.protocols = args.protocols.split(",")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.batch_size, args.batch_wait_ms = 2, 0.0  # what launch() reads; batching stays off here
    return args


def perf_analyzer_home() -> Path:
    """Where scripts/install-perf-analyzer.sh puts it: $CATDOG_PERF_ANALYZER_HOME, else the user's cache."""
    if home := os.environ.get("CATDOG_PERF_ANALYZER_HOME"):
        return Path(home)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "catdog" / "perf-analyzer"


def perf_analyzer() -> Path:
    wrapper = perf_analyzer_home() / "perf_analyzer"
    if not wrapper.exists():
        sys.exit(f"{wrapper} missing: run scripts/install-perf-analyzer.sh")
    return wrapper


def input_data(path: Path, image: bytes, shape: list[int] | None = None) -> Path:
    """perf_analyzer's --input-data JSON with `image` holding one encoded image: a BYTES element is its 4-byte
    little-endian length and then its bytes, base64 as a whole; `shape` without the batch dimension (None: the
    model's)."""
    element = struct.pack("<I", len(image)) + image
    tensor: dict[str, Any] = {"content": {"b64": base64.b64encode(element).decode()}}
    if shape is not None:
        tensor["shape"] = shape
    path.write_text(json.dumps({"data": [{"image": tensor}]}))
    return path


def _wait_ready(http: str, model: str, proc: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    """The model's readiness (Triton answers the server's before PyTriton has bound the model)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{http}/v2/models/{model}/ready", timeout=5) as response:  # noqa: S310 (loopback)
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError("not ready")


def _parse_csv(text: str) -> list[dict[str, str]]:
    header, *rows = [line.split(",") for line in text.strip().splitlines()]
    return [dict(zip(header, row, strict=True)) for row in rows]


def measure(name: str, args: argparse.Namespace, data: Path, log: Path) -> list[dict[str, Any]]:
    """One server, fresh: every protocol x concurrency; rows of perf_analyzer's CSV with what was run."""
    [contender] = [c for c in contenders([name], ["off"]) if c.peer.name == name]
    scratch = Path(tempfile.mkdtemp(prefix="cdt-"))
    port = free_port()
    command, env = launch(contender, args, port, scratch)
    env["PYTHONPATH"] = str(bench.REPO_ROOT)  # catdog: this checkout, not whatever the venv has installed
    grpc_port = env["CATDOG_GRPC_PORT"] if name == "catdog" else command[command.index("--ports") + 1]
    marker = f"{uuid.uuid4().hex}-{name}"
    proc = procs.start(command, args.server_cpus, env, scratch, log, marker)
    rows = []
    try:
        _wait_ready(f"http://127.0.0.1:{port}", args.model, proc)
        for protocol in args.protocols:
            url = f"127.0.0.1:{grpc_port}" if protocol == "grpc" else f"127.0.0.1:{port}"
            for concurrency in args.concurrency:
                csv = scratch / f"{protocol}-{concurrency}.csv"
                run = subprocess.run(
                    [
                        *("taskset", "-c", args.client_cpus, str(perf_analyzer())),
                        *("-m", args.model, "-u", url, "-i", protocol, "-b", str(args.batch)),
                        *("--input-data", str(data), "--concurrency-range", f"{concurrency}:{concurrency}"),
                        *("--measurement-interval", str(args.interval_ms), "--max-trials", "20"),
                        *("--stability-percentage", str(args.stability), "-f", str(csv)),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=False,
                )
                what = {"server": name, "protocol": protocol, "concurrency": concurrency}
                if run.returncode != 0:  # perf_analyzer prints its reason on stdout and stderr
                    rows.append({**what, "error": (run.stdout + run.stderr).strip()[-500:]})
                    continue
                [row] = _parse_csv(csv.read_text())
                rows.append({**what, **row})
    finally:
        survivors = procs.stop(proc, marker)
        if survivors:
            raise RuntimeError(f"{name}: processes survived the stop: {survivors}")
    return rows


def report(best: dict[tuple[str, str, int], dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"perf_analyzer 2.60.0, default mode, -b {args.batch}, {args.size} JPEG, model {args.model}, "
        f"server CPU {args.server_cpus}, client CPU {args.client_cpus}, {args.interval_ms} ms windows, stability "
        f"{args.stability} %, best of {args.repeat} round(s)",
        "",
        "| server | protocol | concurrency | infer/s | p50 ms | p99 ms | server queue us | compute input us "
        "| compute infer us | compute output us |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (server, protocol, concurrency), row in sorted(best.items()):
        if "error" in row:
            lines.append(f"| {server} | {protocol} | {concurrency} | failed: {row['error'][-120:]!r} | | | | | | |")
            continue
        lines.append(
            f"| {server} | {protocol} | {concurrency} | {float(row['Inferences/Second']):.1f} "
            f"| {int(row['p50 latency']) / 1000:.1f} | {int(row['p99 latency']) / 1000:.1f} | {row['Server Queue']} "
            f"| {row['Server Compute Input']} | {row['Server Compute Infer']} | {row['Server Compute Output']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    image = bench.make_images(args.out / "images")[args.size][0]
    data = input_data(args.out / "input.json", image.read_bytes())
    runs: list[dict[str, Any]] = []
    for round_ in range(args.repeat):
        for name in args.servers:
            log = args.out / f"{name}-{round_}.log"
            for row in measure(name, args, data, log):
                runs.append({"round": round_, **row})
                print(json.dumps(runs[-1]), flush=True)
    best: dict[tuple[str, str, int], dict[str, Any]] = {}
    for row in runs:
        key = (row["server"], row["protocol"], row["concurrency"])
        throughput = float(row.get("Inferences/Second", -1))
        if key not in best or throughput > float(best[key].get("Inferences/Second", -1)):
            best[key] = row
    (args.out / "triton-perf.json").write_text(json.dumps(runs, indent=1))
    text = report(best, args)
    (args.out / "triton-perf.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
