"""The replay's model of N replicas, on synthetic rows whose answers are known: interpolation between measured rates,
refusals past the top rate, readings from real samples, pods that serve only once ready, and the HPA's bounds."""

from __future__ import annotations

import random

import pytest

from loadtest.autoscale.capacity import Row
from loadtest.autoscale.hpa import Behavior
from loadtest.autoscale.replay import (
    FAMILIES,
    Candidate,
    Cluster,
    ReplicaModel,
    calibrate,
    candidates,
    grid,
    ramp,
    replay,
)

MU = 10.0


def _row(rate: float) -> Row:
    """A replica of capacity MU: answers min(rate, MU), CPU follows the load, in flight saturates at the limit."""
    load = min(rate / MU, 1.0)
    return Row(
        rate=rate,
        answered_rps=min(rate, MU),
        refusal_fraction=max(0.0, 1 - MU / rate),
        samples={"cpu": [load], "in_flight": [load**3], "queue_wait": [0.01 * load], "refusals": [0.0]},
        latencies_ms=[20.0 + 100 * load] * 50,
    )


MODEL = ReplicaModel([_row(r) for r in (2.0, 5.0, 8.0, 10.0, 15.0)])


def test_interpolates_between_measured_rates_and_refuses_past_the_top() -> None:
    assert MODEL.mean("cpu", 6.5) == pytest.approx(0.65)
    assert MODEL.refusal(12.5) == pytest.approx(0.5 * (1 - MU / 15.0))
    assert MODEL.refusal(40.0) == pytest.approx(1 - MU / 40.0)  # answers at the top rate's throughput
    assert MODEL.mean("cpu", 1.0) == pytest.approx(0.2)  # below the lowest rate: the lowest row


def test_readings_are_drawn_from_the_rows_samples() -> None:
    rng = random.Random(1)
    assert MODEL.reading("cpu", 5.0, pods=3, rng=rng) == pytest.approx(0.5)
    assert MODEL.reading("in_flight", 100.0, pods=1, rng=rng) == pytest.approx(1.0)


def test_calibrated_targets_are_each_signal_at_70_percent() -> None:
    targets = calibrate(MODEL, MU)
    assert targets["cpu"] == pytest.approx(70.0)
    # 7/s lies 2/3 of the way from the 5/s row (0.5 ** 3) to the 8/s row (0.8 ** 3).
    assert targets["in_flight"] == pytest.approx(0.125 / 3 + 0.512 * 2 / 3, abs=0.001)


def test_a_step_up_in_load_is_followed_and_bounded() -> None:
    load = [MU * 1.0] * 120 + [MU * 6.0] * 600
    cluster = Cluster(min_replicas=2, max_replicas=12, pod_start_s=15, behavior=Behavior())
    outcome = replay(MODEL, load, Candidate("cpu", (("cpu", 70.0),)), cluster)
    assert all(2 <= s <= 12 for s in outcome.spec)
    assert all(r <= s for r, s in zip(outcome.ready, outcome.spec, strict=True))
    assert outcome.spec[110] == 2  # 50 % CPU on 2 pods: within target
    assert outcome.spec[-1] >= 8  # 6 x MU at 70 %: 9 pods
    first_up = next(t for t, s in enumerate(outcome.spec) if s > 2)
    assert outcome.ready[first_up] == 2, "a new pod is not ready at once"
    assert outcome.ready[first_up + cluster.pod_start_s] > 2
    assert 0 < outcome.refused_pct < 50
    assert sum(outcome.refused) <= sum(outcome.offered)


def test_a_signal_that_saturates_scales_slower_than_refusals() -> None:
    """CPU cannot read above 100 %: one sync proposes at most 1/0.7 x the pods. The refusal fraction does not
    saturate, so a burst is followed faster and fewer requests are refused."""
    load = [MU * 1.0] * 60 + [MU * 10.0] * 300
    cluster = Cluster(min_replicas=2, max_replicas=20, behavior=Behavior())
    cpu = replay(MODEL, load, Candidate("cpu", (("cpu", 70.0),)), cluster)
    both = replay(MODEL, load, Candidate("cpu+refusals", (("cpu", 70.0), ("refusals", 0.1))), cluster)
    assert both.refused_pct < cpu.refused_pct
    assert both.spec[120] > cpu.spec[120]


def test_the_ramp_and_candidates_cover_what_the_issue_asks() -> None:
    load = ramp(MU)
    assert min(load) > 0 and max(load) > 10 * MU  # quiet ... burst
    names = {c.name for c in candidates({"cpu": 70, "in_flight": 0.5, "queue_wait": 0.1})}
    assert names >= {"CPU", "in-flight", "refusals", "queue wait"}
    assert {c.name for c in grid({"cpu": 70, "in_flight": 0.5, "queue_wait": 0.1})} == set(FAMILIES)


def test_a_trigger_that_reads_its_target_when_idle_never_lets_the_count_fall() -> None:
    """Why the refusal trigger is the refused fraction (0 when nothing is refused) and not decisions per admitted
    request (1, its target): a metric within the tolerance proposes the current count, and the HPA follows the
    largest proposal, so the second form pins the replicas wherever a burst left them."""
    load = [MU * 1.0] * 600
    cluster = Cluster(min_replicas=2, max_replicas=20, initial_replicas=6, behavior=Behavior())
    ratio = replay(MODEL, load, Candidate("r", (("in_flight", 0.5), ("admitted_ratio", 1.0))), cluster)
    assert set(ratio.spec) == {6}
    fraction = replay(MODEL, load, Candidate("f", (("in_flight", 0.5), ("refusals", 0.1))), cluster)
    assert fraction.spec[-1] == 2
