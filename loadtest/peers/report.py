"""Results dict -> the Markdown table docs/benchmarks.md shows, and the per-contender summary it is made from."""

from __future__ import annotations

import math
from typing import Any

from loadtest.peers.protocol import ANSWER_TOLERANCE
from loadtest.peers.registry import CATDOG

WORK_TITLES = {
    "same": "Same work: every peer runs catdog's preprocessing and model file (serving overhead only)",
    "card": "As users run them: each peer with the card's Pillow preprocessing and the FP32 file, catdog as shipped",
}


def summarise(entry: dict[str, Any], sizes: list[str]) -> dict[str, Any]:
    """Best of the repeats for each figure: other work on a shared machine only ever slows a run down. Errors
    are summed over every run; memory is the largest seen; the answer check is the worst difference seen."""
    runs = [r for r in entry.get("runs", []) if "sizes" in r]
    out: dict[str, Any] = {"runs": len(runs)}
    for size in sizes:
        cells = [r["sizes"][size] for r in runs if size in r["sizes"]]
        if not cells:
            continue
        best_single = min(cells, key=lambda c: c["single"]["p50_ms"])["single"]
        cpu = [
            c["saturated"]["server_cpu_ms_per_request"] for c in cells if "server_cpu_ms_per_request" in c["saturated"]
        ]
        out[size] = {
            "cpu_ms": min(cpu) if cpu else None,  # the least disturbed run
            "rps": max(c["saturated"]["rps"] for c in cells),
            "rps_runs": [c["saturated"]["rps"] for c in cells],
            "single_p50_ms": best_single["p50_ms"],
            "single_p99_ms": best_single["p99_ms"],
            "half_p99_ms": min(c["half"]["p99_ms"] for c in cells),
        }
    out["errors"] = sum(
        c[kind]["errors"] for r in runs for c in r["sizes"].values() for kind in ("saturated", "single", "half")
    )
    memory = [r["memory"]["rss_mb"] for r in runs if r.get("memory")]
    out["rss_mb"] = max(memory) if memory else None
    out["processes"] = max((r["memory"]["processes"] for r in runs if r.get("memory")), default=None)
    out["cold_start_s"] = min((r["cold_start_s"] for r in runs), default=None)
    diffs = [a["max_diff"] for r in runs for a in r.get("answers", {}).values() if a.get("max_diff") is not None]
    out["answer_max_diff"] = max(diffs) if diffs else None
    out["leftover"] = sorted({pid for r in runs for pid in r.get("leftover", [])})
    out["unpinned"] = {pid: cpus for r in runs for pid, cpus in r.get("unpinned", {}).items()}
    return out


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """One row per server configuration (failed ones included, with the reason), the in-process limit, and
    catdog's throughput over the best peer's per image size."""
    sizes: list[str] = results["settings"]["sizes"]
    s = results["settings"]
    lines = [
        f"{results['machine']}; server on CPU {s['server_cpus']}, load generator on CPU {s['client_cpus']}; "
        f"{s['seconds']:g} s per measurement, best of {s['repeat']} alternating rounds; saturation = closed loop, "
        f"{s['concurrency']} connections; batching on = at most {s['batch_size']} images, "
        f"{s['batch_wait_ms']:g} ms wait where the framework takes one. Model `{s['model']}`, precision "
        f"{s.get('precision', 'auto')}.",
    ]
    if results.get("work") == "card":
        lines[-1] += (
            " Work: `card`: every peer decodes with Pillow's draft, resizes (bicubic) and crops as the card says and"
            " runs the FP32 file in a default ONNX Runtime session; catdog runs its shipped defaults (its card's"
            " default precision, its own preprocessing). Answer Δ: peers against the first peer's answers;"
            " catdog against the peers' (reported, not held to the tolerance)."
        )
    code = results.get("code")
    if code:
        changed = f", with {len(code['uncommitted'])} uncommitted files" if code["uncommitted"] else ""
        lines[-1] += f" Code: commit {code['commit']}{changed}; run started {results.get('started', '?')}."
    lines.append("")
    head = ["server", "batching"]
    head += [f"img/s {size}" for size in sizes]
    head += [f"single p50 / p99 ms {size}" for size in sizes]
    head += [f"p99 @ half load ms {size}" for size in sizes]
    head += [f"server CPU ms / image {size}" for size in sizes]
    head += ["RSS MB (processes)", "start s", "errors", "answer Δ", "request encoding", "version"]
    lines += ["| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * len(head)) + " |"]
    limit = results.get("limit", {})
    if limit:
        row = ["catdog in-process limit", "—"] + [_fmt(max(limit[size]) if limit.get(size) else None) for size in sizes]
        row += ["—"] * (len(head) - len(row))
        lines.append("| " + " | ".join(row) + " |")
    for entry in results["contenders"].values():
        summary = entry.get("summary") or summarise(entry, sizes)
        batching = entry["batching"] if entry["batched"] else "off"
        if entry.get("error") and not summary["runs"]:
            row = [entry["title"], batching, f"**not measured**: {entry['error']}"]
            row += ["—"] * (len(head) - len(row))
            lines.append("| " + " | ".join(row) + " |")
            continue
        row = [f"**{entry['title']}**" if entry["peer"] == CATDOG else entry["title"], batching]
        row += [_fmt(summary.get(size, {}).get("rps")) for size in sizes]
        row += [
            f"{_fmt(summary[size]['single_p50_ms'])} / {_fmt(summary[size]['single_p99_ms'])}"
            if size in summary
            else "—"
            for size in sizes
        ]
        row += [_fmt(summary.get(size, {}).get("half_p99_ms")) for size in sizes]
        row += [_fmt(summary.get(size, {}).get("cpu_ms"), 2) for size in sizes]
        rss = summary["rss_mb"]
        row.append(f"{_fmt(rss, 0)} ({summary['processes']})" if rss is not None else "—")
        row.append(_fmt(summary["cold_start_s"]))
        errors = str(summary["errors"])
        if entry.get("error"):
            errors += f" (and: {entry['error']})"
        if summary["leftover"]:
            errors += f"; {len(summary['leftover'])} processes survived shutdown"
        if summary.get("unpinned"):
            errors += f"; {len(summary['unpinned'])} processes not pinned"
        row.append(errors)
        diff = summary["answer_max_diff"]
        mark = "" if diff is None or diff <= ANSWER_TOLERANCE else " **over tolerance**"
        if "card_distance" in entry:  # catdog in the card work: its distance from the peers' pipeline
            diff, mark = entry["card_distance"], " (vs the peers')"
        row.append(("—" if diff is None else f"{diff:.1e}") + mark)
        row.append(entry["encoding"])
        version = entry.get("versions", {})
        row.append(f"{version.get(entry['dist'], '?')} (onnxruntime {version.get('onnxruntime', '?')})")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *ratios(results)]
    return "\n".join(lines) + "\n"


def ratios(results: dict[str, Any]) -> list[str]:
    """catdog's best configuration over the best peer configuration, per image size."""
    sizes: list[str] = results["settings"]["sizes"]
    out = []
    for size in sizes:
        best: dict[str, tuple[float, str]] = {}
        for entry in results["contenders"].values():
            rps = (entry.get("summary") or {}).get(size, {}).get("rps")
            if rps is None:
                continue
            side = "catdog" if entry["peer"] == CATDOG else "peer"
            label = entry["title"] + (" + batching" if entry["batched"] else "")
            if rps > best.get(side, (0.0, ""))[0]:
                best[side] = (rps, label)
        if "catdog" in best and "peer" in best:
            (mine, mine_label), (theirs, their_label) = best["catdog"], best["peer"]
            out.append(
                f"- {size}: catdog {mine:.1f} img/s ({mine_label}) / best peer {theirs:.1f} img/s ({their_label}) "
                f"= **{mine / theirs:.2f}x**"
            )
        out += _cpu_ratio(results, size)
    return out


def _cpu_ratio(results: dict[str, Any], size: str) -> list[str]:
    """The same comparison by server CPU per image (the whole process tree, around the saturation run): what one
    dedicated core would give, robust to other work on a shared machine."""
    least: dict[str, tuple[float, str]] = {}
    for entry in results["contenders"].values():
        cpu = (entry.get("summary") or {}).get(size, {}).get("cpu_ms")
        if not cpu:
            continue
        side = "catdog" if entry["peer"] == CATDOG else "peer"
        label = entry["title"] + (" + batching" if entry["batched"] else "")
        if side not in least or cpu < least[side][0]:
            least[side] = (cpu, label)
    if "catdog" not in least or "peer" not in least:
        return []
    (mine, mine_label), (theirs, their_label) = least["catdog"], least["peer"]
    return [
        f"- {size}, by server CPU per image: catdog {mine:.2f} ms ({mine_label}) against the leanest peer's "
        f"{theirs:.2f} ms ({their_label}): **{theirs / mine:.2f}x** the images per dedicated core"
    ]
