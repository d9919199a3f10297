"""N replicas from one measured replica: the HPA replayed second by second over a load ramp, per candidate signal.

The model (docs/benchmarks.md, "Autoscaling: the choice of signal"): the offered load is spread evenly over the ready
pods, so each sees `offered / ready` requests per second; what one pod does at that rate (refusals, latencies, and
the reading of every signal) is what the real process did at that rate in the sweep (capacity.py), interpolated
between the two nearest measured rates. Signal readings are drawn from the real per-second readings (their noise
kept), averaged over up to eight pods as a query over several pods averages them. Prometheus' view lags: gauges are
read at the last scrape, rates and quantiles over a window ending there, CPU over metrics-server's window. The HPA
syncs every 15 s with its tolerance, the chart's behavior and minReplicas / maxReplicas (hpa.py); a new pod serves
once it is ready, a removed one stops at once. Load above the measured top rate answers at the top rate's
throughput and refuses the rest."""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from loadtest.autoscale.capacity import Row
from loadtest.autoscale.hpa import Behavior, HpaState, proposal, step

BINS_MS = np.geomspace(0.5, 120_000, 600)


@dataclass(frozen=True)
class Candidate:
    """A scaling configuration: one or more (signal, target) triggers; the HPA follows the largest proposal."""

    name: str
    triggers: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Cluster:
    sync_s: int = 15
    scrape_lag_s: int = 7  # a reading is as old as the last scrape (15 s interval, half on average)
    rate_window_s: int = 60  # rate(...[1m]) and histogram_quantile over it
    cpu_window_s: int = 30  # metrics-server's CPU window
    pod_start_s: int = 15  # scheduling + container start + catdog ready + the readiness probe's period
    min_replicas: int = 2
    max_replicas: int = 20
    initial_replicas: int = 0  # 0: min_replicas
    behavior: Behavior = field(default_factory=Behavior)
    seed: int = 7


@dataclass
class Outcome:
    candidate: Candidate
    spec: list[int]
    ready: list[int]
    offered: list[float]
    refused: list[float]
    latency_hist: np.ndarray

    @property
    def refused_pct(self) -> float:
        return 100 * sum(self.refused) / max(sum(self.offered), 1e-9)

    def p_ms(self, q: float) -> float:
        cumulative = np.cumsum(self.latency_hist)
        if cumulative[-1] <= 0:
            return math.nan
        index = int(np.searchsorted(cumulative, q * cumulative[-1]))
        return float(BINS_MS[min(index + 1, len(BINS_MS) - 1)])

    @property
    def changes(self) -> int:
        return sum(1 for a, b in zip(self.spec, self.spec[1:], strict=False) if a != b)

    @property
    def replica_minutes(self) -> float:
        return sum(self.spec) / 60

    def summary(self) -> dict[str, float | str]:
        return {
            "signal": self.candidate.name,
            "targets": ", ".join(f"{s} {t:g}" for s, t in self.candidate.triggers),
            "refused_pct": round(self.refused_pct, 2),
            "p99_ms": round(self.p_ms(0.99), 1),
            "p50_ms": round(self.p_ms(0.5), 1),
            "replica_changes": self.changes,
            "replica_minutes": round(self.replica_minutes, 1),
            "max_replicas": max(self.spec),
        }


class ReplicaModel:
    """One replica's response at any rate, from the measured rows."""

    def __init__(self, rows: Sequence[Row]) -> None:
        self.rows = sorted(rows, key=lambda r: r.rate)
        self.rates = [r.rate for r in self.rows]
        self.hists = []
        for row in self.rows:
            counts, _ = np.histogram(row.latencies_ms, bins=BINS_MS)
            self.hists.append(counts / max(counts.sum(), 1))

    def _bracket(self, rate: float) -> tuple[int, int, float]:
        """Indexes of the rows around `rate` and the weight of the upper one."""
        i = bisect.bisect_left(self.rates, rate)
        if i == 0:
            return 0, 0, 0.0
        if i >= len(self.rates):
            last = len(self.rates) - 1
            return last, last, 0.0
        lo, hi = self.rates[i - 1], self.rates[i]
        return i - 1, i, (rate - lo) / (hi - lo)

    def refusal(self, rate: float) -> float:
        if rate > self.rates[-1]:
            top = self.rows[-1]
            return max(top.refusal_fraction, 1 - top.answered_rps / rate)
        lo, hi, w = self._bracket(rate)
        return (1 - w) * self.rows[lo].refusal_fraction + w * self.rows[hi].refusal_fraction

    def latency(self, rate: float) -> np.ndarray:
        lo, hi, w = self._bracket(rate)
        result: np.ndarray = (1 - w) * self.hists[lo] + w * self.hists[hi]
        return result

    def mean(self, signal: str, rate: float) -> float:
        lo, hi, w = self._bracket(rate)
        return (1 - w) * self.rows[lo].mean(signal) + w * self.rows[hi].mean(signal)

    def reading(self, signal: str, rate: float, pods: int, rng: random.Random) -> float:
        """What a query over `pods` pods at `rate` each reads: the mean of real per-second readings."""
        lo, hi, w = self._bracket(rate)
        draws = []
        for _ in range(min(max(pods, 1), 8)):
            row = self.rows[hi] if rng.random() < w else self.rows[lo]
            samples = row.samples.get(signal) or [0.0]
            draws.append(rng.choice(samples))
        return sum(draws) / len(draws)


def ramp(mu: float, noise: float = 0.05, seed: int = 11) -> list[float]:
    """Offered requests per second, second by second, in units of one replica's capacity `mu`: quiet, rising,
    steady with a quiet minute, a burst, steady, falling, quiet."""
    phases: list[tuple[int, float, float]] = [  # (seconds, from, to) in multiples of mu
        (180, 1.0, 1.0),
        (300, 1.0, 6.0),
        (150, 6.0, 6.0),
        (60, 1.5, 1.5),  # a quiet minute
        (150, 6.0, 6.0),
        (60, 12.0, 12.0),  # the burst
        (180, 6.0, 6.0),
        (300, 6.0, 1.0),
        (240, 1.0, 1.0),
    ]
    rng = random.Random(seed)
    load = []
    for seconds, start, end in phases:
        for s in range(seconds):
            level = start + (end - start) * s / seconds
            load.append(max(0.0, mu * level * (1 + rng.gauss(0, noise))))
    return load


def calibrate(model: ReplicaModel, mu: float, utilisation: float = 0.7) -> dict[str, float]:
    """Targets that put every signal at the same operating point: what it reads at `utilisation` x capacity."""
    rate = mu * utilisation
    return {
        "cpu": round(model.mean("cpu", rate) * 100, 1),
        "in_flight": round(model.mean("in_flight", rate), 3),
        "queue_wait": round(model.mean("queue_wait", rate), 4),
    }


def candidates(targets: dict[str, float], refusal_target: float = 0.1) -> list[Candidate]:
    """Each signal at the calibrated operating point (the refused fraction has none: nothing is refused at 70 %)."""
    return [
        Candidate("CPU", (("cpu", targets["cpu"]),)),
        Candidate("in-flight", (("in_flight", targets["in_flight"]),)),
        Candidate("refusals", (("refusals", refusal_target),)),
        Candidate("queue wait", (("queue_wait", targets["queue_wait"]),)),
        Candidate("in-flight + refusals", (("in_flight", targets["in_flight"]), ("refusals", refusal_target))),
    ]


FAMILIES = ("CPU", "in-flight", "refusals", "queue wait", "in-flight + refusals")
IN_FLIGHT_TARGETS = (0.1, 0.2, 0.3, 0.4, 0.6)
REFUSAL_TARGETS = (0.02, 0.05, 0.1, 0.2)


def grid(targets: dict[str, float]) -> list[Candidate]:
    """Every signal at several targets around its calibrated one, so each is judged at its best, not at one guess.
    `refusals` is the refused fraction of admission decisions; `admitted_ratio` (decisions per admitted request,
    1 when nothing is refused) is not a candidate: at its target it proposes the current count, and the HPA's
    largest-proposal rule then never scales down (tests/loadtest/test_autoscale_replay.py)."""
    cpu = [round(targets["cpu"] * f, 1) for f in (0.8, 1.0, 1.2)]
    found = [Candidate("CPU", (("cpu", t),)) for t in cpu]
    found += [Candidate("in-flight", (("in_flight", t),)) for t in IN_FLIGHT_TARGETS]
    found += [Candidate("refusals", (("refusals", t),)) for t in REFUSAL_TARGETS]
    found += [Candidate("queue wait", (("queue_wait", t),)) for t in (0.1, 0.25, 0.5)]
    found += [
        Candidate("in-flight + refusals", (("in_flight", t), ("refusals", r)))
        for t in IN_FLIGHT_TARGETS
        for r in REFUSAL_TARGETS
    ]
    return found


def ideal_replica_minutes(load: Sequence[float], mu: float, cluster: Cluster, utilisation: float = 0.7) -> float:
    """What a clairvoyant autoscaler would spend: every second, just enough pods for `utilisation` x capacity."""
    pods = [min(max(math.ceil(o / (mu * utilisation)), cluster.min_replicas), cluster.max_replicas) for o in load]
    return sum(pods) / 60


def choose(outcomes: Sequence[Outcome], budget_minutes: float) -> dict[str, Outcome]:
    """Per signal, its best configuration within the budget: fewest refusals, then lowest p99, then fewest replica
    changes; a signal that cannot stay within the budget is judged by its cheapest configuration."""
    best: dict[str, Outcome] = {}
    for family in FAMILIES:
        mine = [o for o in outcomes if o.candidate.name == family]
        if not mine:
            continue
        affordable = [o for o in mine if o.replica_minutes <= budget_minutes]
        pool = affordable or [min(mine, key=lambda o: o.replica_minutes)]
        best[family] = min(pool, key=lambda o: (round(o.refused_pct, 2), round(o.p_ms(0.99)), o.changes))
    return best


def _window(values: list[float], end: int, length: int) -> list[float]:
    return values[max(0, end - length) : max(1, end)]


def replay(model: ReplicaModel, load: Sequence[float], candidate: Candidate, cluster: Cluster) -> Outcome:
    rng = random.Random(cluster.seed)
    state = HpaState()
    spec = cluster.initial_replicas or cluster.min_replicas
    pods = [0.0] * spec  # the time each pod is (or will be) ready
    signals = {name for name, _ in candidate.triggers}
    series: dict[str, list[float]] = {name: [] for name in signals}
    out = Outcome(candidate, [], [], [], [], np.zeros(len(BINS_MS) - 1))
    for t, offered in enumerate(load):
        ready = sum(1 for at in pods if at <= t)
        rate = offered / ready if ready else math.inf
        refused_fraction = model.refusal(rate) if ready else 1.0
        refused = offered * refused_fraction
        if ready:
            out.latency_hist += (offered - refused) * model.latency(rate)
        for name in signals:
            if name in ("refusals", "admitted_ratio"):
                series[name].append(refused_fraction)
            else:
                series[name].append(model.reading(name, rate, ready, rng) if ready else 0.0)
        out.offered.append(offered)
        out.refused.append(refused)
        if t and t % cluster.sync_s == 0:
            seen = t - cluster.scrape_lag_s
            readings = []
            for name, target in candidate.triggers:
                if name == "cpu":
                    value = float(np.mean(_window(series[name], t, cluster.cpu_window_s))) * 100
                elif name == "in_flight":
                    value = series[name][max(seen, 0)]
                elif name in ("refusals", "admitted_ratio"):
                    window = slice(max(0, seen - cluster.rate_window_s), max(1, seen))
                    offered_sum, refused_sum = sum(out.offered[window]), sum(out.refused[window])
                    if name == "refusals":  # the chart's query: refused / decisions over the rate window
                        value = refused_sum / max(offered_sum, 1e-9)
                    else:  # decisions per admitted request, 1 when idle
                        value = max(offered_sum / max(offered_sum - refused_sum, 1e-3), 1.0) if offered_sum else 1.0
                else:
                    value = float(np.mean(_window(series[name], seen, cluster.rate_window_s)))
                readings.append((value, target))
            desired = proposal(spec, ready, readings)
            spec = step(state, float(t), spec, desired, cluster.behavior, cluster.min_replicas, cluster.max_replicas)
            if spec > len(pods):
                pods += [float(t + cluster.pod_start_s)] * (spec - len(pods))
            elif spec < len(pods):
                pods = sorted(pods)[:spec]  # the newest (not yet ready first) go
        out.spec.append(spec)
        out.ready.append(sum(1 for at in pods if at <= t))
    return out
