"""Scrape catdog's /metrics before and after a run and turn the difference into a per-model breakdown:
where the server's time went (preprocess, queue wait, inference, whole request) and how full the batches
were. Histograms are diffed bucket by bucket, so the numbers describe the run alone, not the process's life."""

from __future__ import annotations

import math
import os
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

HISTOGRAMS = {
    "request": "catdog_request_duration_seconds",
    "preprocess": "catdog_preprocess_duration_seconds",
    "queue_wait": "catdog_queue_wait_seconds",
    "inference": "catdog_inference_duration_seconds",
    "batch_size": "catdog_batch_size",
}


@dataclass
class Histogram:
    buckets: dict[float, float] = field(default_factory=dict)  # upper bound -> cumulative count
    total: float = 0.0
    count: float = 0.0

    def minus(self, other: Histogram) -> Histogram:
        return Histogram(
            {le: n - other.buckets.get(le, 0.0) for le, n in self.buckets.items()},
            self.total - other.total,
            self.count - other.count,
        )

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def quantile(self, q: float) -> float:
        """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds the rank."""
        if not self.count:
            return math.nan
        rank, lower, below = q * self.count, 0.0, 0.0
        for le in sorted(self.buckets):
            n = self.buckets[le]
            if n >= rank:
                if math.isinf(le):
                    return lower
                return lower + (le - lower) * ((rank - below) / (n - below) if n > below else 1.0)
            lower, below = le, n
        return lower


Snapshot = dict[tuple[str, str], Histogram]  # (metric key, model) -> histogram


def scrape(base_url: str, timeout: float = 10.0) -> Snapshot:
    """The server's histograms; with access control on, CATDOG_LOADTEST_METRICS_KEY is a key with the metrics scope."""
    request = urllib.request.Request(base_url.rstrip("/") + "/metrics")  # noqa: S310
    if key := os.environ.get("CATDOG_LOADTEST_METRICS_KEY"):
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
        return parse(response.read().decode())


def parse(text: str) -> Snapshot:
    names = {v: k for k, v in HISTOGRAMS.items()}
    found: Snapshot = {}
    for family in text_string_to_metric_families(text):
        key = names.get(family.name)
        if key is None:
            continue
        for sample in family.samples:
            # Series of one model under other labels (the request duration's `protocol`) add up.
            model = sample.labels.get("model", "")
            hist = found.setdefault((key, model), Histogram())
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                hist.buckets[le] = hist.buckets.get(le, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                hist.total += sample.value
            elif sample.name.endswith("_count"):
                hist.count += sample.value
    return found


def breakdown(before: Snapshot, after: Snapshot) -> dict[str, dict[str, float]]:
    """model -> {'<key>_mean_ms', '<key>_p95_ms', ..., 'batch_size_mean', 'images'} for the run between."""
    out: dict[str, dict[str, float]] = {}
    for (key, model), hist in after.items():
        run = hist.minus(before.get((key, model), Histogram()))
        if run.count <= 0:
            continue
        row = out.setdefault(model, {})
        if key == "batch_size":
            row["batch_size_mean"] = run.mean
            row["batch_size_p95"] = run.quantile(0.95)
            row["batches"] = run.count
            row["images"] = run.total
        else:
            row[f"{key}_mean_ms"] = run.mean * 1000
            row[f"{key}_p50_ms"] = run.quantile(0.5) * 1000
            row[f"{key}_p95_ms"] = run.quantile(0.95) * 1000
            row[f"{key}_p99_ms"] = run.quantile(0.99) * 1000
    return out
