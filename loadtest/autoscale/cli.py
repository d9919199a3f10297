"""`python -m loadtest autoscale [measure|replay|all]` and `python -m loadtest cold-start`.

measure: a real catdog on --cpus (one core), the load generator on --client-cpus; its capacity, then a sweep of
open-loop rates with /metrics scraped every second -> rows.json. replay: the HPA over the ramp for each candidate
signal -> results.json, a markdown table and the PNG plots. all: both."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loadtest.bench import REPO_ROOT, _free_port, _machine, make_images, requests_for, server

FRACTIONS = [0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from loadtest.autoscale import capacity

    images = make_images(args.images)["small"]
    env = {
        "CATDOG_MODEL_DIR": str(args.model_dir.resolve()),
        "CATDOG_LOG_LEVEL": "warning",
        "CATDOG_GRPC_PORT": str(_free_port()),
        # The chart's pods (2 CPUs) run the split pipeline, the only one that measures the queue wait.
        "CATDOG_PIPELINE": "split",
        "CATDOG_INTRA_OP_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    with server(cmd, env, args.cpus) as (url, proc, _):
        reqs = requests_for(url, "/predict/pretrained", images)
        mu = capacity.capacity(url, proc.pid, reqs, seconds=args.step_s, repeat=args.repeat)
        print(f"capacity on cpu {args.cpus}: {mu:.1f} answers/s", flush=True)
        rows = capacity.sweep(url, proc.pid, reqs, mu, FRACTIONS, args.step_s, args.repeat)
    return {
        "machine": _machine(),
        "cpus": args.cpus,
        "settings": env,
        "images": [p.name for p in images],
        "mu": mu,
        "step_s": args.step_s,
        "repeat": args.repeat,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": [r.to_json() for r in rows],
    }


def replay(measured: dict[str, Any], out: Path, plots: Path | None) -> list[dict[str, Any]]:
    import yaml

    from loadtest.autoscale.capacity import Row
    from loadtest.autoscale.hpa import behavior_from_spec
    from loadtest.autoscale.replay import Cluster, ReplicaModel, calibrate, candidates, ramp
    from loadtest.autoscale.replay import replay as run_replay

    values = yaml.safe_load((REPO_ROOT / "deploy/helm/catdog/values.yaml").read_text())
    keda = values["autoscaling"]["keda"]
    cluster = Cluster(
        min_replicas=values["autoscaling"]["minReplicas"],
        max_replicas=20,
        behavior=behavior_from_spec(keda["behavior"]),
    )
    model = ReplicaModel([Row.from_json(r) for r in measured["rows"]])
    mu = float(measured["mu"])
    targets = calibrate(model, mu)
    load = ramp(mu)
    refusal_target = float(keda["signals"]["refusals"]["target"])
    outcomes = [run_replay(model, load, c, cluster) for c in candidates(targets, refusal_target)]
    summaries = [o.summary() for o in outcomes]
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps({"targets": targets, "mu": mu, "cluster": str(cluster), "results": summaries}, indent=2) + "\n"
    )
    print(f"calibrated targets (each signal's reading at 70 % of one replica's capacity): {targets}")
    print(markdown(summaries))
    if plots is not None:
        from loadtest.autoscale.plots import plot

        for path in plot(outcomes, mu, plots):
            print(f"plot: {path}")
    return summaries


def markdown(summaries: list[dict[str, Any]]) -> str:
    lines = [
        "| signal (targets) | refused | p50 | p99 | replica changes | replica-minutes | max replicas |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summaries:
        lines.append(
            f"| {s['signal']} ({s['targets']}) | {s['refused_pct']:.2f} % | {s['p50_ms']:.0f} ms "
            f"| {s['p99_ms']:.0f} ms | {s['replica_changes']} | {s['replica_minutes']} | {s['max_replicas']} |"
        )
    return "\n".join(lines)


def autoscale_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest autoscale", description=__doc__)
    parser.add_argument("action", nargs="?", choices=("measure", "replay", "all"), default="all")
    parser.add_argument("--cpus", default="1", help="the server's core (taskset)")
    parser.add_argument("--client-cpus", default="0", help="the load generator's core")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--images", type=Path, default=Path(tempfile.gettempdir()) / "catdog-bench-images")
    parser.add_argument("--step-s", type=float, default=8.0, help="seconds per rate step")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over the rates; the least disturbed run counts")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "autoscale")
    parser.add_argument("--rows", type=Path, help="replay these measured rows (default <out>/rows.json)")
    parser.add_argument("--plots", type=Path, default=REPO_ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    if args.action in ("measure", "all"):
        _pin(args.client_cpus)
        measured = measure(args)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "rows.json").write_text(json.dumps(measured) + "\n")
        print(f"rows: {args.out / 'rows.json'}")
    if args.action in ("replay", "all"):
        measured = json.loads((args.rows or args.out / "rows.json").read_text())
        replay(measured, args.out, args.plots)
    return 0


def cold_start_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest cold-start", description="cold start on one core")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpus", default="1")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "cold-start.json")
    args = parser.parse_args(argv)
    from loadtest.autoscale.cold_start import measure as measure_cold_start

    result = {"machine": _machine(), **measure_cold_start(args.runs, args.cpus, args.model_dir.resolve())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"]))
    return 0


def _pin(cpus: str) -> None:
    import os

    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
