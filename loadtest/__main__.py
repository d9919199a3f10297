"""`python -m loadtest run --profile steady --host http://...`: a Locust profile against any catdog, then one
report joining Locust's client-side figures with the server-side breakdown scraped from /metrics.
`python -m loadtest bench`: the benchmark harness (see loadtest/bench.py).
`python -m loadtest answers`: the fast preprocessing's answer budget, every model x photo (loadtest/answers.py).
`python -m loadtest overhead`: the serving path's CPU ms per request with a near-free model (loadtest/overhead.py).
`python -m loadtest autoscale`: the scaling signal's choice, the HPA replayed on a real catdog (loadtest/autoscale/).
`python -m loadtest cold-start`: start to ready and to the first answer on one core (loadtest/autoscale/)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from loadtest.metrics import Snapshot, breakdown, scrape
from loadtest.shapes import PROFILES, stages

HERE = Path(__file__).resolve().parent


def run_profile(args: argparse.Namespace) -> int:
    out: Path = args.out / f"{args.profile}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    prefix = out / "locust"
    env = {
        **os.environ,
        "CATDOG_LOADTEST_PROFILE": args.profile,
        "CATDOG_LOADTEST_USERS": str(args.users),
        "CATDOG_LOADTEST_TIME_SCALE": str(args.time_scale),
    }
    if args.images:
        env["CATDOG_LOADTEST_IMAGES"] = str(args.images)
    cmd = [sys.executable, "-m", "locust", "-f", f"{HERE / 'locustfile.py'},{HERE / 'shapes.py'}"]
    cmd += ["--host", args.host, "--headless", "--csv", str(prefix), "--html", str(prefix) + ".html"]
    cmd += ["--only-summary", "--exit-code-on-error", "1", "--stop-timeout", "10"]
    if args.tags:
        cmd += ["--tags", *args.tags]
    before = _scrape(args.host)
    code = subprocess.run(cmd, env=env, check=False).returncode
    after = _scrape(args.host)
    report = build_report(args.profile, args.host, prefix, before, after)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    text = render_report(report)
    (out / "report.md").write_text(text)
    print(text)
    print(f"files: {out}")
    failures = report["client"]["total"]["failures"]
    return code or (1 if failures else 0)


def _scrape(host: str) -> Snapshot | None:
    try:
        return scrape(host)
    except OSError as exc:
        print(f"warning: no server-side breakdown ({host}/metrics: {exc})", file=sys.stderr)
        return None


def read_locust_stats(prefix: Path) -> dict[str, dict[str, float]]:
    """name -> requests, failures, rps, p50/p95/p99 ms, from Locust's <prefix>_stats.csv."""
    rows: dict[str, dict[str, float]] = {}
    with Path(f"{prefix}_stats.csv").open() as f:
        for row in csv.DictReader(f):
            key = "total" if row["Name"] == "Aggregated" else f"{row['Type']} {row['Name']}"
            rows[key] = {
                "requests": float(row["Request Count"]),
                "failures": float(row["Failure Count"]),
                "rps": float(row["Requests/s"]),
                "p50_ms": _num(row["50%"]),
                "p95_ms": _num(row["95%"]),
                "p99_ms": _num(row["99%"]),
            }
    return rows


def _num(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("nan")


def build_report(
    profile: str, host: str, prefix: Path, before: Snapshot | None, after: Snapshot | None
) -> dict[str, Any]:
    server = breakdown(before, after) if before is not None and after is not None else {}
    return {"profile": profile, "host": host, "client": read_locust_stats(prefix), "server": server}


def render_report(report: dict[str, Any]) -> str:
    lines = [f"# catdog load test: profile {report['profile']} against {report['host']}", ""]
    lines += ["Client side (Locust):", "", "| request | count | failures | RPS | p50 ms | p95 ms | p99 ms |"]
    lines += ["| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, s in report["client"].items():
        lines.append(
            f"| {name} | {s['requests']:.0f} | {s['failures']:.0f} | {s['rps']:.1f} | {s['p50_ms']:.0f} "
            f"| {s['p95_ms']:.0f} | {s['p99_ms']:.0f} |"
        )
    lines += ["", "Server side (/metrics, this run only), per model, mean / p95 ms:", ""]
    lines += ["| model | request | preprocess (per image) | queue wait | inference (per batch) | batch size mean |"]
    lines += ["| --- | --- | --- | --- | --- | ---: |"]
    for model, b in sorted(report["server"].items()):

        def pair(key: str, b: dict[str, float] = b) -> str:
            return f"{b.get(key + '_mean_ms', float('nan')):.1f} / {b.get(key + '_p95_ms', float('nan')):.1f}"

        lines.append(
            f"| {model} | {pair('request')} | {pair('preprocess')} | {pair('queue_wait')} | {pair('inference')} "
            f"| {b.get('batch_size_mean', float('nan')):.2f} |"
        )
    if not report["server"]:
        lines.append("| (no /metrics: server-side breakdown unavailable) | | | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a load profile with Locust and report")
    run.add_argument("--profile", choices=sorted(PROFILES), default="smoke")
    run.add_argument("--host", default=os.environ.get("CATDOG_URL", "http://127.0.0.1:8000"))
    run.add_argument("--users", type=int, default=8, help="scale the profile (its base is 8 users)")
    run.add_argument("--time-scale", type=float, default=1.0, help="stretch (>1) or shrink (<1) every stage")
    run.add_argument("--tags", nargs="*", help="only these locustfile tags (seed, generic, pretrained, ...)")
    run.add_argument("--images", type=Path, help="folder of images (default loadtest/images)")
    run.add_argument("--out", type=Path, default=Path("artifacts/loadtest"))
    sub.add_parser("profiles", help="list the profiles")
    sub.add_parser("bench", help="the benchmark harness; pass its options after --", add_help=False)
    sub.add_parser("answers", help="the preprocessing's answer budget and step times; options after --", add_help=False)
    sub.add_parser("overhead", help="the serving path's CPU per request; options after --", add_help=False)
    sub.add_parser("autoscale", help="the choice of scaling signal, replayed on real measurements", add_help=False)
    sub.add_parser("cold-start", help="start to ready and to the first answer on one core", add_help=False)
    args, rest = parser.parse_known_args(argv)
    if args.command == "profiles":
        for name in PROFILES:
            print(name, [(round(end), users) for end, users, _ in stages(name)])
        return 0
    if args.command == "bench":
        from loadtest.bench import main as bench_main

        return bench_main([a for a in rest if a != "--"])
    if args.command == "answers":
        from loadtest.answers import main as answers_main

        return answers_main([a for a in rest if a != "--"])
    if args.command == "overhead":
        from loadtest.overhead import main as overhead_main

        return overhead_main([a for a in rest if a != "--"])
    if args.command == "autoscale":
        from loadtest.autoscale.cli import autoscale_main

        return autoscale_main([a for a in rest if a != "--"])
    if args.command == "cold-start":
        from loadtest.autoscale.cli import cold_start_main

        return cold_start_main([a for a in rest if a != "--"])
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    return run_profile(args)


if __name__ == "__main__":
    raise SystemExit(main())
