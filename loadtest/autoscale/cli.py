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

from loadtest.bench import REPO_ROOT, _machine, make_images, requests_for, server
from loadtest.ports import free_port

# A configuration may spend this much more than a clairvoyant autoscaler at 70 % (replay.ideal_replica_minutes).
BUDGET = 1.3
FRACTIONS = [0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from loadtest.autoscale import capacity

    images = make_images(args.images)["small"]
    env = {
        "CATDOG_MODEL_DIR": str(args.model_dir.resolve()),
        "CATDOG_LOG_LEVEL": "warning",
        "CATDOG_GRPC_PORT": str(free_port()),
        # The chart's pods (2 CPUs) run the split pipeline, the only one that measures the queue wait.
        "CATDOG_PIPELINE": "split",
        "CATDOG_INTRA_OP_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", "{port}"]
    if args.nice:
        cmd = ["nice", "-n", str(args.nice), *cmd]
    with server(cmd, env, args.cpus) as (url, proc, _):
        reqs = requests_for(url, "/predict/pretrained", images)
        mu = args.mu or capacity.capacity(url, proc.pid, reqs, seconds=args.step_s, repeat=args.repeat)
        print(f"capacity on cpu {args.cpus}: {mu:.1f} answers/s", flush=True)
        rows = capacity.sweep(url, proc.pid, reqs, mu, args.fractions or FRACTIONS, args.step_s, args.repeat)
    return {
        "machine": _machine(),
        "cpus": args.cpus,
        "settings": env,
        "images": [p.name for p in images],
        "mu": mu,
        "step_s": args.step_s,
        "repeat": args.repeat,
        "nice": args.nice,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": [r.to_json() for r in rows],
    }


def replay(measured: dict[str, Any], out: Path, plots: Path | None) -> list[dict[str, Any]]:
    import yaml

    from loadtest.autoscale.capacity import Row
    from loadtest.autoscale.hpa import behavior_from_spec
    from loadtest.autoscale.replay import Cluster, ReplicaModel, calibrate, choose, grid, ideal_replica_minutes, ramp
    from loadtest.autoscale.replay import replay as run_replay

    values = yaml.safe_load((REPO_ROOT / "deploy/helm/catdog/values.yaml").read_text())
    keda = values["autoscaling"]["keda"]
    cluster = Cluster(
        min_replicas=values["autoscaling"]["minReplicas"],
        max_replicas=20,
        behavior=behavior_from_spec(keda["behavior"]),
    )
    model = ReplicaModel([Row.from_json(r) for r in measured["rows"]])
    # One replica's capacity: the most answers per second any step saw (the sweep goes well past saturation); the
    # closed-loop figure measured first only placed the sweep's rates.
    mu = max(float(r["answered_rps"]) for r in measured["rows"])
    targets = calibrate(model, mu)
    load = ramp(mu)
    outcomes = [run_replay(model, load, c, cluster) for c in grid(targets)]
    budget = BUDGET * ideal_replica_minutes(load, mu, cluster)
    best = choose(outcomes, budget)
    winner = min(best.values(), key=lambda o: (round(o.refused_pct, 2), round(o.p_ms(0.99)), o.changes))
    summaries = [o.summary() for o in outcomes]
    chosen = [o.summary() for o in best.values()]
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "mu": mu,
        "calibrated_targets": targets,
        "budget_replica_minutes": round(budget, 1),
        "cluster": str(cluster),
        "best_per_signal": chosen,
        "winner": winner.summary(),
        "all": summaries,
        "measured": {k: v for k, v in measured.items() if k != "rows"},
    }
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"capacity {mu:.1f}/s; each signal's reading at 70 % of it: {targets}; budget {budget:.0f} replica-minutes")
    print("every configuration:")
    print(markdown(summaries))
    print("each signal at its best within the budget:")
    print(markdown(chosen))
    print(f"winner: {winner.candidate.name} ({winner.summary()['targets']})")
    if plots is not None:
        from loadtest.autoscale.plots import plot

        for path in plot(list(best.values()), mu, plots):
            print(f"plot: {path}")
    return chosen


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
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="scheduling priority of the server and the load generator (e.g. -10 on a crowded shared machine: root)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "autoscale")
    parser.add_argument("--mu", type=float, help="measure at fractions of this rate instead of a measured capacity")
    parser.add_argument("--fractions", type=float, nargs="+", help=f"rates as fractions of capacity ({FRACTIONS})")
    parser.add_argument("--merge", type=Path, help="measure: add these earlier rows (other rates) to the new ones")
    parser.add_argument("--rows", type=Path, help="replay these measured rows (default <out>/rows.json)")
    parser.add_argument("--plots", type=Path, default=REPO_ROOT / "docs" / "images")
    args = parser.parse_args(argv)
    if args.action in ("measure", "all"):
        _pin(args.client_cpus)
        if args.nice:
            import os

            os.setpriority(os.PRIO_PROCESS, 0, args.nice)
        measured = measure(args)
        if args.merge:
            earlier = json.loads(args.merge.read_text())
            new_rates = {round(r["rate"], 3) for r in measured["rows"]}
            kept = [r for r in earlier["rows"] if round(r["rate"], 3) not in new_rates]
            measured["rows"] = sorted(kept + measured["rows"], key=lambda r: r["rate"])
            measured["merged_from"] = earlier.get("measured_at")
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
