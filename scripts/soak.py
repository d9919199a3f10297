"""Soak: steady load on a real `catdog serve` process for a few minutes; reports errors and memory growth.

    make soak                                   # 180 s, 8 clients, the bundled models (or tiny ones)
    python scripts/soak.py --seconds 600 --clients 16 --model-dir models

The mix: valid photos (most requests), plus a steady share of hostile input (bad bytes, a decompression
bomb, a many-frame GIF, a truncated multipart), so the refusal paths are soaked too. Memory is the service's
RSS sampled every 5 s; growth is measured from the end of warm-up (the first 20 % of the run) to the end, and the
run fails when it exceeds --max-growth-mib or when any request gets an unexpected status.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from loadtest.bench import process_memory_mb  # noqa: E402
from tests.support.hostile import JPEG, animated_gif, encode, noise, png_declaring  # noqa: E402
from tests.support.onnx_models import write_test_repository  # noqa: E402
from tests.support.server import ServiceProcess  # noqa: E402


def rss_mib(pid: int) -> float:
    return process_memory_mb(pid)["rss_mb"]


def workload(photos: list[bytes]) -> list[tuple[str, dict[str, object], set[int]]]:
    gif = animated_gif(2000)
    return [
        *[("photo", {"files": {"file": ("p.jpg", p, "image/jpeg")}}, {200}) for p in photos],
        ("garbage", {"files": {"file": ("x.jpg", b"not an image at all", "image/jpeg")}}, {415}),
        ("bomb", {"files": {"file": ("b.png", png_declaring(100_000, 100_000), "image/png")}}, {413}),
        ("frames", {"files": {"file": ("a.gif", gif, "image/gif")}}, {413}),
        ("truncated", {"files": {"file": ("t.jpg", JPEG[: len(JPEG) // 2], "image/jpeg")}}, {400}),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--model-dir", type=Path, help="default: ./models when it has models, else tiny test models")
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--max-growth-mib", type=float, default=25.0)
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    model_dir = args.model_dir
    if model_dir is None:
        bundled = REPO / "models"
        model_dir = bundled if any(bundled.glob("*/model.onnx")) else write_test_repository(Path(tempfile.mkdtemp()))
    photos = [p.read_bytes() for p in sorted((REPO / "data" / "images").glob("*.jpg"))[:8]]
    photos = photos or [encode(noise((640, 480), seed=i), "JPEG") for i in range(4)]
    mix = workload(photos)

    svc = ServiceProcess({"CATDOG_MODEL_DIR": str(model_dir), "CATDOG_LOG_LEVEL": "warning"}).start(timeout=300)
    assert svc.proc is not None
    statuses: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    latencies: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + args.seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=svc.base_url, timeout=30) as http:
            i = index
            while time.monotonic() < stop:
                name, request, expected = mix[i % len(mix)]
                i += 1
                started = time.perf_counter()
                try:
                    status: int | str = http.post(f"/predict/{args.model}", **request).status_code  # type: ignore[arg-type]
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    statuses[f"{name}:{status}"] += 1
                    if status not in expected:
                        unexpected[f"{name}:{status}"] += 1
                    if name == "photo":
                        latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(args.clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    samples: list[tuple[float, float]] = []
    while any(t.is_alive() for t in threads):
        samples.append((time.monotonic() - started, rss_mib(svc.proc.pid)))
        time.sleep(5)
    samples.append((time.monotonic() - started, rss_mib(svc.proc.pid)))
    svc.stop()

    warm = [m for t, m in samples if t >= args.seconds * 0.2] or [samples[-1][1]]
    growth = warm[-1] - warm[0]
    total = sum(statuses.values())
    ordered = sorted(latencies)
    report = {
        "seconds": round(time.monotonic() - started, 1),
        "clients": args.clients,
        "model_dir": str(model_dir),
        "requests": total,
        "requests_per_s": round(total / args.seconds, 1),
        "unexpected": sum(unexpected.values()),
        "unexpected_by_kind": dict(unexpected),
        "statuses": dict(sorted(statuses.items())),
        "photo_latency_ms": {
            "p50": round(statistics.median(ordered) * 1000, 1) if ordered else None,
            "p99": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1) if ordered else None,
        },
        "rss_mib": {"start": round(samples[0][1], 1), "after_warmup": round(warm[0], 1), "end": round(warm[-1], 1)},
        "rss_growth_after_warmup_mib": round(growth, 1),
        "rss_samples_mib": [round(m, 1) for _, m in samples],
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    ok = not unexpected and growth <= args.max_growth_mib
    print("soak:", "PASS" if ok else "FAIL", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
