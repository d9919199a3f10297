"""Measure models that change while serving (docs/benchmarks.md, "Model versions"): load time cold from S3 and
warm from the cache, p99 latency during a swap against before it, and resident memory after repeated swaps.

    python -m loadtest.measure_models [--model-dir models] [--model pretrained] [--seconds 8] [--swaps 20]

S3 is moto's server on loopback (the same boto3 path as a real bucket, without its network). The model is the
bundled one (18.7 MB for pretrained); its second version is the same graph under version "2". One JSON object
out. Not run in CI."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from loadtest.swaps import SwapLoad, failures, moves, p99_ms

BUCKET = "ml-models"
KEY = "catdog_measure-admin-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}  # an API key with the admin, infer and metrics scopes
PREFIX = "catdog"


def _stage(src: Path, dst: Path, version: str) -> None:
    """`src` (a one-version model folder) as `dst/<version>/`, its card's version set to the folder's name."""
    target = dst / version
    target.mkdir(parents=True)
    card = json.loads((src / "model.json").read_text())
    card["version"] = version
    card.pop("variants", None)
    card["default_precision"] = "fp32"
    shutil.copy(src / card["onnx"]["file"], target / card["onnx"]["file"])
    (target / "model.json").write_text(json.dumps(card))


def _metric(base_url: str, name: str, **labels: str) -> float | None:
    selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in httpx.get(f"{base_url}/metrics", headers=HEADERS).text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    del selector
    return None


def _phases(base_url: str, model: str) -> dict[str, float]:
    found = {}
    for phase in ("download", "verify", "session", "warmup"):
        total = _metric(base_url, "catdog_model_load_duration_seconds_sum", model=model, phase=phase)
        count = _metric(base_url, "catdog_model_load_duration_seconds_count", model=model, phase=phase)
        if total is not None and count:
            found[phase] = round(total / count, 4)
    return found


def _started(env: dict[str, str]) -> tuple[Any, float]:
    from tests.support.server import ServiceProcess

    began = time.perf_counter()
    svc = ServiceProcess(env).start(timeout=300)
    return svc, time.perf_counter() - began


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _wait_closed(client: httpx.Client, timeout_s: float = 60.0) -> None:
    """Until no version is UNLOADING: the one swapped out has closed (it closes after the load call answers)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(e["state"] != "UNLOADING" for e in client.post("/v2/repository/index").json()):
            return
        time.sleep(0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models"))
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--seconds", type=float, default=8.0, help="steady load before the swap")
    parser.add_argument("--swaps", type=int, default=20, help="load/unload cycles for the memory figure")
    parser.add_argument("--workers", type=int, default=2, help="closed-loop clients per protocol")
    args = parser.parse_args(argv)

    from tests.support.images import RED, encode, solid
    from tests.support.s3 import s3_server

    work = Path(tempfile.mkdtemp(prefix="catdog-measure-"))
    local = work / "repo" / args.model
    _stage(args.model_dir / args.model, local, "1")
    staged_v2 = work / "v2"
    _stage(args.model_dir / args.model, staged_v2, "2")
    image = encode(solid(RED, (640, 480)), "JPEG")
    entry = {"name": "ops", "sha256": hashlib.sha256(KEY.encode()).hexdigest(), "scopes": ["admin", "infer", "metrics"]}
    (work / "keys.json").write_text(json.dumps({"keys": [entry]}))
    admin = HEADERS
    report: dict[str, Any] = {"model": args.model, "onnx_bytes": sum(p.stat().st_size for p in local.rglob("*"))}
    with s3_server() as s3:
        s3.client().create_bucket(Bucket=BUCKET)
        s3.upload_tree(BUCKET, PREFIX, work / "repo")
        env = {
            **s3.env,
            "CATDOG_MODEL_DIR": f"s3://{BUCKET}/{PREFIX}",
            "CATDOG_MODEL_CACHE_DIR": str(work / "cache"),
            "CATDOG_MODEL_CONTROL": "poll",
            "CATDOG_MODEL_POLL_S": "1",
            "CATDOG_API_KEYS_FILE": str(work / "keys.json"),
            "CATDOG_LOG_LEVEL": "warning",
        }
        # 1. Cold from S3 (empty cache), then warm from the cache (the same objects: nothing fetched).
        svc, seconds = _started(env)
        report["cold_start_to_ready_s"] = round(seconds, 3)
        report["cold_load_phases_s"] = _phases(svc.base_url, args.model)
        # 2. p99 during a swap against before it, under steady load on /v1, /v2 REST and gRPC.
        load = SwapLoad(
            svc.base_url, svc.grpc_target, args.model, image, workers_per_protocol=args.workers, headers=HEADERS
        ).start()
        time.sleep(args.seconds)
        swap_at = time.perf_counter()
        s3.upload_tree(BUCKET, f"{PREFIX}/{args.model}/2", staged_v2 / "2")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            answers = load.snapshot()
            if {a.worker for a in answers if a.version == "2"} >= {a.worker for a in answers}:
                break
            time.sleep(0.1)
        swapped_at = time.perf_counter()
        time.sleep(2.0)  # the old version's close, after its last request
        answers = load.stop()
        before = [a for a in answers if a.started < swap_at]
        during = [a for a in answers if swap_at <= a.started <= swapped_at + 2.0]
        report["swap"] = {
            "answers": len(answers),
            "failed": len(failures(answers)),
            "moves_per_worker": sorted({"->".join(v) for v in moves(answers).values()}),
            "swap_window_s": round(swapped_at - swap_at, 3),
            "p99_before_ms": round(p99_ms(before), 2),
            "p99_during_ms": round(p99_ms(during), 2),
            "p99_ratio": round(p99_ms(during) / p99_ms(before), 3),
            "v2_load_phases_s": _phases(svc.base_url, args.model),
        }
        svc.stop()
        svc, seconds = _started(env)
        report["warm_start_to_ready_s"] = round(seconds, 3)
        report["warm_load_phases_s"] = _phases(svc.base_url, args.model)  # no download: the cache's ETags match
        svc.stop()
    # 3. Offline from the cache (the server gone), then repeated swaps in explicit mode for the memory figure.
    svc, seconds = _started({**env, "CATDOG_MODEL_DOWNLOAD_TIMEOUT_S": "2"})
    report["offline_start_to_ready_s"] = round(seconds, 3)  # includes boto3's retries against the dead endpoint
    report["offline_load_phases_s"] = _phases(svc.base_url, args.model)
    svc.stop()
    local_env = {
        "CATDOG_MODEL_DIR": str(work / "repo"),
        "CATDOG_MODEL_CONTROL": "explicit",
        "CATDOG_MODEL_LOAD": args.model,
        "CATDOG_API_KEYS_FILE": str(work / "keys.json"),
        "CATDOG_LOG_LEVEL": "warning",
    }
    svc, _ = _started(local_env)
    client = httpx.Client(base_url=svc.base_url, timeout=120, headers=admin)
    shutil.copytree(staged_v2 / "2", work / "repo" / args.model / "2")
    rss = [_rss_mib(svc.proc.pid)]
    for i in range(args.swaps):
        # Swap to the other version: the load publishes it and retires the one serving.
        if i % 2 == 0:
            shutil.move(work / "repo" / args.model / "2", work / "v2-parked")
        else:
            shutil.move(work / "v2-parked", work / "repo" / args.model / "2")
        assert client.post(f"/v2/repository/models/{args.model}/load").status_code == 200
        _wait_closed(client)
        rss.append(_rss_mib(svc.proc.pid))
    time.sleep(1.0)
    rss.append(_rss_mib(svc.proc.pid))
    report["rss_mib"] = {
        "start": round(rss[0], 1),
        "after_first_swap": round(rss[1], 1),
        "after_all": round(rss[-1], 1),
        "max": round(max(rss), 1),
        "swaps": args.swaps,
    }
    client.close()
    svc.stop()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
