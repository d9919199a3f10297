"""`make bench-peers` (python -m loadtest.peers): catdog, its in-process limit and its peers in one run.

Each round measures the limit, then every server configuration in turn (catdog first, then the peers: rounds
alternate A B C A B C), each started fresh under `taskset` on the server CPU and ended completely afterwards.
Per server: time to the first answer, every test image's first answer against catdog's, then for each JPEG size
images/s at saturation (closed loop), single-request p50/p99 and p99 at half the saturated rate (open loop), and
the resident memory of its whole process tree. Results: --out/peers.json and --out/peers.md.

Two works per image (`--work`, both by default, one after the other):
- `same`: every peer runs catdog's own preprocessing on the model file catdog serves: serving overhead only;
  answers must match catdog's (ANSWER_TOLERANCE).
- `card`: each peer as a user sets it up from its docs and the model card (`servers.common.card_tensor`: Pillow's
  draft decode, bicubic resize, centre crop; a default ONNX Runtime session on the FP32 file) against catdog with
  its shipped defaults (the card's default precision). Peers' answers must match each other's; catdog's
  distance from theirs is reported, not held to the tolerance (its preprocessing is held to the reference's by
  the answer budget instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from loadtest import bench, loadgen
from loadtest.peers import procs, report, venvs
from loadtest.peers.protocol import ANSWER_TOLERANCE, ENCODINGS, answer_difference, exchange
from loadtest.peers.registry import CATDOG, PEERS, Contender, Peer, contenders
from loadtest.peers.servers.common import WORKS
from loadtest.ports import free_port

SMOKE_PEER = "litserve"


def _csv(choices: list[str] | None = None) -> Any:
    def parse(text: str) -> list[str]:
        items = [item.strip() for item in text.split(",") if item.strip()]
        bad = [item for item in items if choices is not None and item not in choices]
        if bad or not items:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(choices or [])}; got {text!r}")
        return items

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.peers", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    names = list(PEERS)
    parser.add_argument("--peers", type=_csv(names), help=f"comma-separated, from {','.join(names)} (default all)")
    parser.add_argument("--sizes", type=_csv(list(bench.SIZES)), default=list(bench.SIZES), help="small,large")
    parser.add_argument("--batching", type=_csv(["off", "on"]), default=["off", "on"], help="off,on")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per saturation run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each figure is the best round's")
    parser.add_argument("--concurrency", type=int, default=8, help="closed-loop connections at saturation")
    parser.add_argument("--batch-size", type=int, default=8, help="most images per batch, batching on")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0, help="batch window, where one is taken")
    parser.add_argument("--server-cpus", default="1", help="taskset list for every server and the limit loop")
    parser.add_argument("--client-cpus", default="0", help="taskset list for this process (the load generator)")
    parser.add_argument("--model", default="pretrained")
    parser.add_argument(
        "--work",
        type=_csv(list(WORKS)),
        default=list(WORKS),
        help="same (catdog's preprocessing and model file everywhere), card (each peer as users set it up), or both",
    )
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "int8"), help="CATDOG_PRECISION")
    parser.add_argument("--model-dir", type=Path, default=bench.REPO_ROOT / "models")
    parser.add_argument("--images", type=Path, default=Path(tempfile.gettempdir()) / "catdog-bench-images")
    parser.add_argument("--out", type=Path, default=bench.REPO_ROOT / "artifacts" / "bench-peers")
    parser.add_argument("--no-limit", action="store_true", help="skip the in-process limit")
    parser.add_argument("--no-install", action="store_true", help="use the venvs as they are")
    parser.add_argument("--install-only", action="store_true", help="create or update the venvs, then stop")
    parser.add_argument(
        "--smoke", action="store_true", help=f"catdog and one peer ({SMOKE_PEER} unless --peers), small JPEG, 3 s"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.peers = args.peers or [SMOKE_PEER]
        args.sizes, args.seconds, args.repeat, args.batching = ["small"], 3.0, 1, ["off"]
    args.peers = args.peers or names
    if args.repeat < 1 or args.seconds <= 0 or args.concurrency < 1 or args.batch_size < 2:
        parser.error("--repeat and --concurrency must be >= 1, --seconds > 0, --batch-size >= 2")
    return args


def launch(
    contender: Contender, args: argparse.Namespace, port: int, scratch: Path, work: str = "same"
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that start one server configuration for `work` (see above)."""
    peer = contender.peer
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV" and not k.startswith("CATDOG_")}
    if peer.name == CATDOG:
        models = scratch / "models"  # the one model the peers serve, so memory compares like with like
        models.mkdir()
        (models / args.model).symlink_to(args.model_dir.resolve() / args.model)
        env |= {
            "CATDOG_MODEL_DIR": str(models),
            "CATDOG_BATCH_MAX_SIZE": str(args.batch_size if contender.batched else 1),
            "CATDOG_BATCH_MAX_WAIT_MS": str(args.batch_wait_ms if contender.batched else 0),
            "CATDOG_GRPC_PORT": str(free_port()),  # its gRPC listener, like the peers', on a free port
        }
        if work == "same":  # as users run it: the shipped default precision (the card's)
            env["CATDOG_PRECISION"] = args.precision
        return [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port)], env
    python = venvs.venv_python(peer)
    env |= {
        "PYTHONPATH": str(bench.REPO_ROOT),
        "PATH": f"{python.parent}{os.pathsep}{env.get('PATH', '')}",
        "BENTOML_HOME": str(scratch / "bentoml"),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    if peer.needs_libpython:
        env["LD_LIBRARY_PATH"] = str(venvs.base_lib_dir(python.parent.parent))
    command = [str(python), "-m", peer.module, "--model-dir", str(args.model_dir.resolve()), "--model", args.model]
    precision = args.precision if work == "same" else "fp32"  # the card's published file
    command += ["--port", str(port), "--workdir", str(scratch / "work"), "--precision", precision]
    command += ["--work-per-image", work]
    command += ["--max-batch", str(args.batch_size if contender.batched else 1), "--batch-wait-ms"]
    command += [str(args.batch_wait_ms)]
    if peer.extra_ports:
        command += ["--ports", *[str(free_port()) for _ in range(peer.extra_ports)]]
    return command, env


def _first_answer(url: str, request: bytes, proc: Any, timeout: float, log: Path) -> tuple[bytes, float]:
    """Poll with a real request until the server answers 200 (readiness differs per framework; a correct answer
    is the one test that means the same for all). Returns the body and the seconds since start."""
    started = time.perf_counter()
    last = "no connection"
    while time.perf_counter() - started < timeout:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"exited with {proc.returncode} before answering: {' / '.join(tail)[-300:]}")
        try:
            status, body = exchange(url, request, timeout=30)
        except OSError as exc:
            last = type(exc).__name__
        else:
            if status == 200:
                return body, time.perf_counter() - started
            last = f"HTTP {status}: {body[:200]!r}"
        time.sleep(0.25)
    raise TimeoutError(f"no answer within {timeout:.0f} s (last: {last})")


def measure(
    contender: Contender,
    args: argparse.Namespace,
    images: dict[str, list[Path]],
    labels: list[str],
    reference: dict[str, list[float]],
    log: Path,
    work: str = "same",
) -> dict[str, Any]:
    """Start one server configuration, check its answers against `reference` (the first server's to answer
    fills it), load it, measure it, end it."""
    peer, encoding = contender.peer, ENCODINGS[contender.peer.encoding]
    # Short: Ray puts unix sockets under it, and their paths must stay under 108 bytes.
    scratch = Path(tempfile.mkdtemp(prefix="cdp-"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    path = peer.path.format(model=args.model)
    command, env = launch(contender, args, port, scratch, work)
    marker = f"{uuid.uuid4().hex}-{contender.key}"
    requests = {
        size: [encoding.build(url, path, p.read_bytes(), p.name, contender.batched) for p in paths]
        for size, paths in images.items()
    }
    run: dict[str, Any] = {"log": str(log)}
    proc = procs.start(command, args.server_cpus, env, scratch, log, marker)
    try:
        first_size = next(iter(images))
        _, run["cold_start_s"] = _first_answer(url, requests[first_size][0], proc, peer.start_timeout_s, log)
        run["cold_start_s"] = round(run["cold_start_s"], 2)
        run["answers"] = {}
        for size, paths in images.items():
            for image, request in zip(paths, requests[size], strict=True):
                status, body = exchange(url, request)
                if status != 200:
                    raise RuntimeError(f"{image.name}: HTTP {status}: {body[:200]!r}")
                answer = encoding.parse(body, labels)
                reference.setdefault(image.name, answer)  # the first to answer (catdog, in the same work)
                diff = answer_difference(answer, reference[image.name])
                run["answers"][image.name] = {"probabilities": answer, "max_diff": diff}
        run["memory_idle"] = procs.tree_memory_mb(proc.pid, marker)
        run["sizes"] = {}
        for size, reqs in requests.items():
            cpu0 = procs.tree_cpu_s(proc.pid, marker)
            saturated = asyncio.run(loadgen.closed_loop(url, reqs, args.concurrency, args.seconds))
            saturated.server_cpu_s = procs.tree_cpu_s(proc.pid, marker) - cpu0
            single = asyncio.run(loadgen.closed_loop(url, reqs, 1, args.seconds / 2, warmup_s=0.5))
            half = asyncio.run(loadgen.open_loop(url, reqs, max(saturated.rps / 2, 0.5), args.seconds))
            run["sizes"][size] = {"saturated": saturated.summary(), "single": single.summary(), "half": half.summary()}
            print(f"  {contender.key} {size}: {json.dumps(run['sizes'][size])}", file=sys.stderr, flush=True)
        run["memory"] = procs.tree_memory_mb(proc.pid, marker)
        run["unpinned"] = procs.unpinned(proc.pid, marker, set(bench._parse_cpus(args.server_cpus)))
    finally:
        run["leftover"] = procs.stop(proc, marker)
        shutil.rmtree(scratch, ignore_errors=True)
    return run


def code_state() -> dict[str, Any]:
    """The commit measured, and what in the measured code differed from it (the tree is shared while it runs)."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=bench.REPO_ROOT, capture_output=True, text=True, check=False)
        return done.stdout

    dirty = git("status", "--porcelain", "--", "service", "models", "loadtest").splitlines()
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted": [line[3:] for line in dirty]}


def run(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Install what is missing, then each work of --work in turn: work -> its results."""
    logs = args.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    peers: list[Peer] = [PEERS[name] for name in dict.fromkeys([CATDOG, *args.peers])]
    if args.no_install:
        missing = "no venv (run without --no-install)"
        status = {p.name: None if venvs.venv_python(p).exists() else missing for p in peers}
    else:
        status = venvs.ensure_all(peers, logs)
    os.sched_setaffinity(0, bench._parse_cpus(args.client_cpus))
    return {work: run_work(args, work, status) for work in args.work}


def run_work(args: argparse.Namespace, work: str, status: dict[str, str | None]) -> dict[str, Any]:
    """Every round of one work: the limit, then every server configuration in turn."""
    from service.dataplane.card import ModelCard

    labels = list(ModelCard.load(args.model_dir / args.model / "model.json").labels)
    all_images = bench.make_images(args.images)
    images = {size: all_images[size] for size in args.sizes}
    logs = args.out / "logs"
    results: dict[str, Any] = {
        "machine": bench._machine(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "code": code_state(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"work": work},
        "work": work,
        "limit": {size: [] for size in images},
        "reference": {},
        "catdog_answers": {},
        "contenders": {},
    }
    entries: dict[str, dict[str, Any]] = results["contenders"]
    chosen = contenders(list(args.peers), list(args.batching))
    for contender in chosen:
        peer = contender.peer
        entries[contender.key] = {
            "peer": peer.name,
            "title": peer.title,
            "dist": peer.dist,
            "batched": contender.batched,
            "batching": peer.batching if contender.batched else "off",
            "encoding": ENCODINGS[peer.encoding].describe,
            "versions": venvs.versions(peer) if status[peer.name] is None else {},
            "error": status[peer.name],
            "runs": [],
        }
    for round_index in range(args.repeat):
        print(f"round {round_index + 1} of {args.repeat}", file=sys.stderr, flush=True)
        if not args.no_limit:
            for size, paths in images.items():
                model_dir = args.model_dir.resolve()
                ips = bench.limit(model_dir, args.model, paths, args.server_cpus, 0, args.seconds, args.precision)
                results["limit"][size].append(round(ips, 2))
                print(f"  limit {size}: {ips:.1f} img/s", file=sys.stderr, flush=True)
        for contender in chosen:
            entry = entries[contender.key]
            if entry["error"] is not None:
                continue  # could not install, or failed in an earlier round: reported, not retried
            log = logs / f"{work}-{contender.key}-round{round_index + 1}.log"
            log.unlink(missing_ok=True)
            # The card work: the peers' answers are the reference (they must agree with each other); catdog's
            # own are checked against themselves, and their distance from the peers' is reported afterwards.
            own = work == "card" and contender.peer.name == CATDOG
            reference = results["catdog_answers"] if own else results["reference"]
            try:
                entry["runs"].append(measure(contender, args, images, labels, reference, log, work))
            except Exception as exc:  # any failure of a peer is a result to report, not a crash of the harness
                entry["error"] = f"{type(exc).__name__}: {exc}"[:400]
                print(f"  {contender.key} failed: {entry['error']}", file=sys.stderr, flush=True)
    if work == "card":
        for entry in entries.values():
            if entry["peer"] == CATDOG:
                entry["card_distance"] = card_distance(entry, results["reference"])
    for entry in entries.values():
        entry["summary"] = report.summarise(entry, list(images))
    return results


def card_distance(entry: dict[str, Any], reference: dict[str, list[float]]) -> float | None:
    """catdog's largest probability difference from the peers' card pipeline, over every image and round."""
    diffs = [
        answer_difference(answer["probabilities"], reference[image])
        for run in entry["runs"]
        for image, answer in run.get("answers", {}).items()
        if image in reference
    ]
    return max(diffs) if diffs else None


def failures(results: dict[str, Any]) -> list[str]:
    """What makes the run's exit status non-zero: a wrong answer or processes left behind (a peer that could not
    run is a reported result, not a failure of the harness)."""
    problems = []
    work = results.get("work", "same")
    for key, entry in results["contenders"].items():
        summary = entry["summary"]
        diff = summary.get("answer_max_diff")
        if diff is not None and diff > ANSWER_TOLERANCE:
            whose = "the other peers'" if work == "card" else "catdog's"
            problems.append(f"{key}: answers differ from {whose} by {diff:.2e} (tolerance {ANSWER_TOLERANCE})")
        if summary.get("leftover"):
            problems.append(f"{key}: processes survived shutdown: {summary['leftover']}")
        if summary.get("unpinned"):
            problems.append(f"{key}: processes ran outside the server CPUs: {summary['unpinned']}")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.install_only:
        status = venvs.ensure_all([PEERS[n] for n in args.peers if n != CATDOG], args.out / "logs")
        for name, problem in status.items():
            print(f"{name}: {problem or 'ready'}")
        return 1 if any(status.values()) else 0
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    by_work = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "peers.json").write_text(json.dumps(by_work, indent=2))
    table = "\n".join(f"### {report.WORK_TITLES[work]}\n\n{report.markdown(r)}" for work, r in by_work.items())
    (args.out / "peers.md").write_text(table)
    print(table)
    problems = [problem for r in by_work.values() for problem in failures(r)]
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
