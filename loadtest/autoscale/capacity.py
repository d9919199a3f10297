"""One replica's measured response to load: a real catdog process on one core (taskset) driven at a sweep of open-loop
arrival rates, its /metrics scraped every second. Each rate step keeps every per-second reading of every candidate
signal (CPU, in flight against the admission limit, refusals, queue-wait p95) and the answered requests' latencies,
so the replay draws real readings, noise included, instead of a smoothed curve."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from loadtest import loadgen
from loadtest.bench import process_cpu_s
from loadtest.metrics import Histogram
from loadtest.metrics import parse as parse_histograms

SIGNALS = ("cpu", "in_flight", "refusals", "queue_wait")


@dataclass(frozen=True)
class Scrape:
    at: float
    cpu_s: float
    in_flight_ratio: float  # hottest model: in flight / admission limit
    admissions: float
    refused: float  # catdog_rejected_requests_total{reason="overloaded"}
    queue_wait: Histogram


@dataclass
class Row:
    """One offered rate (requests per second to this one replica) and what the replica did with it."""

    rate: float
    answered_rps: float
    refusal_fraction: float
    samples: dict[str, list[float]] = field(default_factory=dict)  # signal -> per-second readings
    latencies_ms: list[float] = field(default_factory=list)  # answered requests, sorted

    def mean(self, signal: str) -> float:
        values = self.samples.get(signal, [])
        return sum(values) / len(values) if values else 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Row:
        return cls(**raw)


def scrape(url: str, pid: int) -> Scrape:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:  # noqa: S310 (our own child)
        text = response.read().decode()
    in_flight: dict[str, float] = {}
    limit: dict[str, float] = {}
    admissions = refused = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            model = sample.labels.get("model", "")
            if sample.name == "catdog_requests_in_flight":
                in_flight[model] = sample.value
            elif sample.name == "catdog_admission_limit":
                limit[model] = sample.value
            elif sample.name == "catdog_admissions_total":
                admissions += sample.value
            elif sample.name == "catdog_rejected_requests_total" and sample.labels.get("reason") == "overloaded":
                refused += sample.value
    ratio = max((in_flight.get(m, 0.0) / max(limit[m], 1.0) for m in limit), default=0.0)
    waits = Histogram()
    for (key, _model), hist in parse_histograms(text).items():
        if key == "queue_wait":
            for le, n in hist.buckets.items():
                waits.buckets[le] = waits.buckets.get(le, 0.0) + n
            waits.count += hist.count
            waits.total += hist.total
    return Scrape(time.monotonic(), process_cpu_s(pid), ratio, admissions, refused, waits)


class Scraper:
    """Scrapes every `interval_s` in a thread while a step runs."""

    def __init__(self, url: str, pid: int, interval_s: float = 1.0) -> None:
        self.url, self.pid, self.interval_s = url, pid, interval_s
        self.scrapes: list[Scrape] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            # A scrape that timed out on a crowded machine is skipped: the next one still counts.
            with contextlib.suppress(OSError):
                self.scrapes.append(scrape(self.url, self.pid))
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def readings(scrapes: list[Scrape]) -> dict[str, list[float]]:
    """Per-second readings of every signal between consecutive scrapes (fractions; queue wait in seconds)."""
    out: dict[str, list[float]] = {name: [] for name in SIGNALS}
    for before, after in itertools.pairwise(scrapes):
        dt = after.at - before.at
        decisions = after.admissions - before.admissions
        out["cpu"].append((after.cpu_s - before.cpu_s) / dt)
        out["in_flight"].append(after.in_flight_ratio)
        out["refusals"].append((after.refused - before.refused) / decisions if decisions > 0 else 0.0)
        p95 = after.queue_wait.minus(before.queue_wait).quantile(0.95)
        out["queue_wait"].append(0.0 if math.isnan(p95) else p95)
    return out


def measure_rate(url: str, pid: int, requests: list[bytes], rate: float, seconds: float) -> Row:
    """Open-loop arrivals at `rate` for `seconds`; the first second's readings (the transition) are dropped."""
    with Scraper(url, pid) as scraper:
        result = asyncio.run(loadgen.open_loop(url, requests, rate, seconds, max_conns=64))
    scrapes = scraper.scrapes[1:] if len(scraper.scrapes) > 2 else scraper.scrapes
    if len(scrapes) < 2:
        raise RuntimeError(f"fewer than two scrapes of {url}/metrics in {seconds} s")
    first, last = scrapes[0], scrapes[-1]
    decisions = last.admissions - first.admissions
    return Row(
        rate=rate,
        answered_rps=round(len(result.latencies_s) / result.elapsed_s, 3) if result.elapsed_s else 0.0,
        refusal_fraction=(last.refused - first.refused) / decisions if decisions > 0 else 0.0,
        samples={k: [round(v, 5) for v in vs] for k, vs in readings(scrapes).items()},
        latencies_ms=sorted(round(s * 1000, 2) for s in result.latencies_s),
    )


def capacity(url: str, pid: int, requests: list[bytes], seconds: float = 8.0, repeat: int = 3) -> float:
    """Answers per second at saturation (closed loop, 8 connections), best of `repeat`: other work on a shared machine
    only ever slows a run down. The unit the sweep and the ramp are drawn in."""
    return max(asyncio.run(loadgen.closed_loop(url, requests, 8, seconds)).rps for _ in range(repeat))


def least_disturbed(rows: list[Row]) -> Row:
    """Of repeated runs at one rate, the one other work slowed least: most answers, then the shortest queue."""
    return max(rows, key=lambda r: (round(r.answered_rps / max(r.rate, 1e-9), 2), -r.mean("queue_wait")))


def sweep(
    url: str, pid: int, requests: list[bytes], mu: float, fractions: list[float], seconds: float, repeat: int = 3
) -> list[Row]:
    """A Row per offered rate (`fractions` of the measured capacity `mu`), lowest first: `repeat` rounds over every
    rate, each round in a different order, keeping each rate's least disturbed run."""
    runs: dict[float, list[Row]] = {f: [] for f in fractions}
    order = sorted(fractions)
    for round_index in range(repeat):
        for fraction in order if round_index % 2 == 0 else order[::-1]:
            row = measure_rate(url, pid, requests, mu * fraction, seconds)
            print(
                f"  {fraction:4.2f} x capacity = {row.rate:6.1f}/s: answered {row.answered_rps:6.1f}/s, refused "
                f"{row.refusal_fraction:6.1%}, cpu {row.mean('cpu'):5.1%}, in-flight/limit "
                f"{row.mean('in_flight'):.3f}, queue p95 {row.mean('queue_wait') * 1000:6.1f} ms",
                flush=True,
            )
            runs[fraction].append(row)
    return [least_disturbed(runs[f]) for f in order]
