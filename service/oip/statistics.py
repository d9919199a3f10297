"""Triton's model statistics (the `statistics` extension): what `GET /v2/models[/{m}[/versions/{v}]]/stats` and
gRPC `ModelStatistics` answer, and what perf_analyzer reports as its server-side figures.

Built from what the data plane counts at its own seams (service/dataplane/tally.py), in Triton's terms, and held
to /metrics by tests:
- `inference_count`: images inferred (= `catdog_batch_size_sum`); `execution_count`: ONNX Runtime runs
  (= `catdog_batch_size_count`); `batch_stats`: those runs by exact batch size, with their time;
- `success` / `fail`: inference requests of every protocol (/predict included) answered, or refused or failed
  after admission, with their end-to-end durations (together: `catdog_request_duration_seconds`, all protocols);
- `queue`, `compute_input` (decode + preprocess), `compute_infer` (the runs that held the request's images, a
  shared run counted whole) and `compute_output` (the decision): per successful request, as Triton counts them
  (perf_analyzer refuses statistics whose compute counts differ), in wall-clock ns.
"""

from __future__ import annotations

from typing import Any

from service.dataplane.tally import Duration, InferenceTally


def model_statistics(counts: InferenceTally, name: str, version: str) -> dict[str, Any]:
    """One entry of `model_stats` for model `name` (serving `version`)."""
    tally = counts.snapshot(name)
    batches = tally.batches
    return {
        "name": name,
        "version": version,
        "last_inference": tally.last_inference_ms,
        "inference_count": sum(size * runs.count for size, runs in batches.items()),
        "execution_count": sum(runs.count for runs in batches.values()),
        "inference_stats": {
            "success": _duration(tally.success),
            "fail": _duration(tally.fail),
            "queue": _duration(tally.queue),
            "compute_input": _duration(tally.compute_input),
            "compute_infer": _duration(tally.compute_infer),
            "compute_output": _duration(tally.compute_output),
            "cache_hit": _duration(Duration()),
            "cache_miss": _duration(Duration()),
        },
        "batch_stats": [
            {
                "batch_size": size,
                "compute_input": _duration(Duration(runs.count, 0)),
                "compute_infer": _duration(runs),
                "compute_output": _duration(Duration(runs.count, 0)),
            }
            for size, runs in batches.items()
        ],
        "memory_usage": [],
    }


def _duration(d: Duration) -> dict[str, int]:
    return {"count": d.count, "ns": d.ns}
