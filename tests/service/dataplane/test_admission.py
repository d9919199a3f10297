"""Admission control (service/dataplane/admission.py) on a fake clock: the limit follows the measured
throughput (rises when requests get faster, falls when they get slower), refusals say why and when to come
back, bodies in flight are bounded, and work whose deadline has passed is dropped at every stage: before
decoding (a real model and the real decode pool), before queueing and before inference (the real batcher)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path

import numpy as np
import pytest

from service.dataplane.admission import Admission, Deadline, Stage
from service.dataplane.batching import MicroBatcher
from service.dataplane.dataplane import DataPlane
from service.dataplane.inference import Upload
from service.errors import DeadlineExceeded, Overloaded
from service.observability import ServiceMetrics
from service.settings import Settings
from tests.support.images import RED, encode, solid


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def serve(
    admission: Admission, clock: Clock, model: str, *, seconds: float, service_s: float, concurrency: int
) -> None:
    """Keep `concurrency` requests in flight for `seconds`, each taking `service_s` (a saturated model whose
    throughput is concurrency / service_s)."""
    end = clock.now + seconds
    while clock.now < end:
        permits = [admission.admit(model, Deadline(clock.now + 60)) for _ in range(concurrency)]
        clock.now += service_s
        for permit in permits:
            permit.release()


def test_the_limit_rises_and_falls_with_measured_latency() -> None:
    clock = Clock()
    admission = Admission(target_latency_s=0.5, min_limit=1, max_limit=1000, clock=clock)
    assert admission.limit("m") == 1  # nothing measured yet: the floor
    serve(admission, clock, "m", seconds=5, service_s=0.01, concurrency=1)  # 100 requests/s
    assert admission.throughput("m") == pytest.approx(100, rel=0.05)
    fast = admission.limit("m")
    assert fast == pytest.approx(50, abs=3)  # 100/s x 0.5 s
    serve(admission, clock, "m", seconds=8, service_s=0.1, concurrency=1)  # 10x slower
    slow = admission.limit("m")
    assert slow == pytest.approx(5, abs=1)
    serve(admission, clock, "m", seconds=8, service_s=0.02, concurrency=1)  # faster again
    assert admission.limit("m") == pytest.approx(25, abs=2)
    assert slow < admission.limit("m") < fast


def test_the_limit_counts_concurrency_and_stays_within_its_bounds() -> None:
    clock = Clock()
    admission = Admission(target_latency_s=1.0, min_limit=4, max_limit=40, clock=clock)
    serve(admission, clock, "m", seconds=5, service_s=0.1, concurrency=2)  # two at a time: 20/s
    assert admission.limit("m") == pytest.approx(20, abs=1)
    serve(admission, clock, "m", seconds=5, service_s=0.01, concurrency=2)  # 200/s: capped
    assert admission.limit("m") == 40
    serve(admission, clock, "m", seconds=10, service_s=2.0, concurrency=1)  # 0.5/s: floored
    assert admission.limit("m") == 4


def test_idle_time_is_not_counted_as_slowness() -> None:
    clock = Clock()
    admission = Admission(target_latency_s=1.0, min_limit=1, max_limit=1000, clock=clock)
    for _ in range(40):  # one 10 ms request every 200 ms: the model is idle 95 % of the time
        with admission.admit("m", Deadline(clock.now + 60)):
            clock.now += 0.01
        clock.now += 0.19
    assert admission.throughput("m") == pytest.approx(100, rel=0.05)


def test_refusal_at_the_limit_is_immediate_counted_and_says_when_to_come_back() -> None:
    clock = Clock()
    metrics = ServiceMetrics()
    admission = Admission(metrics, target_latency_s=1.0, min_limit=1, max_limit=1000, clock=clock)
    serve(admission, clock, "m", seconds=3, service_s=0.25, concurrency=1)  # 4/s -> limit 4
    assert admission.limit("m") == 4
    held = [admission.admit("m", Deadline(clock.now + 60)) for _ in range(4)]
    retry_afters = []
    for _ in range(50):
        with pytest.raises(Overloaded) as refused:
            admission.admit("m", Deadline(clock.now + 60))
        assert refused.value.status == 503 and refused.value.code == "overloaded"
        assert refused.value.retry_after_s is not None
        retry_afters.append(refused.value.retry_after_s)
    # The first refusals: drain of the admitted work (4 at 4/s = 1 s). As the refused crowd grows, they are
    # told to come back over the time it takes to serve them all, not all in the same second.
    assert min(retry_afters) == 1
    assert max(retry_afters) >= 5
    assert all(1 <= r <= 30 for r in retry_afters)
    assert sample(metrics, "catdog_admissions_total", model="m", result="refused_limit") == 50
    assert sample(metrics, "catdog_admission_limit", model="m") == 4
    for permit in held:
        permit.release()
    clock.now += 60  # the crowd has come back (or gone): Retry-After falls back to the drain time
    assert admission.retry_after_s("m") == 1
    with admission.admit("m", Deadline(clock.now + 60)):  # a free slot: admitted again at once
        pass


def test_a_deadline_that_the_queue_ahead_cannot_meet_is_refused() -> None:
    clock = Clock()
    metrics = ServiceMetrics()
    admission = Admission(metrics, target_latency_s=10.0, min_limit=1, max_limit=1000, clock=clock)
    serve(admission, clock, "m", seconds=3, service_s=0.1, concurrency=1)  # 10/s
    held = [admission.admit("m", Deadline(clock.now + 60)) for _ in range(5)]  # 0.5 s of work ahead
    with pytest.raises(Overloaded, match="deadline"):
        admission.admit("m", Deadline(clock.now + 0.3))
    admission.admit("m", Deadline(clock.now + 2.0)).release()
    assert sample(metrics, "catdog_admissions_total", model="m", result="refused_deadline") == 1
    for permit in held:
        permit.release()


def test_bodies_in_flight_are_bounded_across_models() -> None:
    clock = Clock()
    metrics = ServiceMetrics()
    admission = Admission(metrics, max_body_bytes=10_000_000, clock=clock)
    big = admission.admit("a", Deadline(clock.now + 60), body_bytes=6_000_000)
    with pytest.raises(Overloaded, match="bodies"):
        admission.admit("b", Deadline(clock.now + 60), body_bytes=6_000_000)
    small = admission.admit("b", Deadline(clock.now + 60), body_bytes=3_000_000)
    assert sample(metrics, "catdog_body_bytes_in_flight") == 9_000_000
    big.release()
    small.release()
    big.release()  # releasing twice changes nothing
    assert admission.body_bytes == 0
    # Alone, a body larger than the whole budget is still admitted: no upload under the size limit starves.
    admission.admit("a", Deadline(clock.now + 60), body_bytes=20_000_000).release()
    assert sample(metrics, "catdog_admissions_total", model="b", result="refused_memory") == 1


def test_one_hot_model_does_not_use_up_another_models_slots() -> None:
    clock = Clock()
    admission = Admission(min_limit=4, max_limit=4, clock=clock)
    hot = [admission.admit("hot", Deadline(clock.now + 60)) for _ in range(4)]
    with pytest.raises(Overloaded):
        admission.admit("hot", Deadline(clock.now + 60))
    quiet = admission.admit("quiet", Deadline(clock.now + 60))
    assert (admission.in_flight("hot"), admission.in_flight("quiet")) == (4, 1)
    for permit in [*hot, quiet]:
        permit.release()


def test_client_timeouts_are_capped() -> None:
    clock = Clock()
    assert Deadline.within(None, cap=30, clock=clock).expires_at == clock.now + 30
    assert Deadline.within(2.5, cap=30, clock=clock).expires_at == clock.now + 2.5
    assert Deadline.within(600, cap=30, clock=clock).expires_at == clock.now + 30


def sync(case: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the suite has no asyncio plugin), fixtures passed through."""

    @wraps(case)
    def test(**fixtures: object) -> None:
        asyncio.run(asyncio.wait_for(case(**fixtures), 20))

    return test


@sync
async def test_expired_work_is_dropped_before_the_queue_and_before_inference() -> None:
    metrics = ServiceMetrics()
    admission = Admission(metrics)
    gate = threading.Event()
    runs: list[int] = []

    def run(batch: np.ndarray) -> np.ndarray:
        gate.wait(5)
        runs.append(len(batch))
        return np.zeros((len(batch), 2), dtype=np.float32)

    batcher = MicroBatcher("m", run, max_batch_size=1, max_wait_s=0.0, queue_max=8)
    batcher.start()
    tensor = np.zeros((3, 2, 2), dtype=np.float32)
    try:
        gate.clear()
        blocker = asyncio.create_task(batcher.submit(tensor))  # holds the one inference thread
        await asyncio.sleep(0.05)
        with admission.admit("m", Deadline.within(0.1, cap=30)) as permit:
            waiting = asyncio.create_task(batcher.submit(tensor, permit))
            await asyncio.sleep(0.01)
            assert admission.depth("m", Stage.QUEUED) == 1
            await asyncio.sleep(0.2)  # its deadline passes while it waits in the queue
            gate.set()
            with pytest.raises(DeadlineExceeded):
                await waiting
        await blocker
        assert runs == [1], "the expired tensor was computed"
        assert sample(metrics, "catdog_expired_work_total", model="m", stage="inference") == 1
        assert admission.depth("m", Stage.QUEUED) == admission.depth("m", Stage.INFERENCE) == 0
        with admission.admit("m", Deadline.within(0.01, cap=30)) as permit:
            await asyncio.sleep(0.05)
            with pytest.raises(DeadlineExceeded):
                await batcher.submit(tensor, permit)  # already expired: never queued
        assert sample(metrics, "catdog_expired_work_total", model="m", stage="queued") == 1
        assert runs == [1]
    finally:
        gate.set()
        await batcher.stop()


@sync
async def test_expired_work_is_dropped_before_decoding(tiny_repository: Path) -> None:
    settings = Settings(model_dir=tiny_repository, intra_op_threads=1)
    metrics = ServiceMetrics()
    data_plane = DataPlane.from_settings(settings, metrics)
    data_plane.repository.discover(only="pretrained")
    await data_plane.load()
    model = data_plane.model_for_work("pretrained")
    upload = Upload(encode(solid(RED), "JPEG"))
    try:
        with data_plane.admission.admit("pretrained", Deadline.within(30, cap=30)) as permit:
            [prediction] = await data_plane.classify(model, [upload], permit)  # in time: answered
        assert prediction.answer.label == "cat"
        with data_plane.admission.admit("pretrained", Deadline.within(0.01, cap=30)) as permit:
            await asyncio.sleep(0.05)
            with pytest.raises(DeadlineExceeded):
                await data_plane.classify(model, [upload], permit)
        assert sample(metrics, "catdog_expired_work_total", model="pretrained", stage="decoding") == 1
        assert sample(metrics, "catdog_preprocess_duration_seconds_count", model="pretrained") == 1  # not decoded
        assert data_plane.admission.depth("pretrained", Stage.DECODING) == 0
    finally:
        await data_plane.close()


def test_stalled_uploads_stop_holding_slots_after_the_target_latency() -> None:
    clock = Clock()
    admission = Admission(target_latency_s=1.0, min_limit=2, max_limit=2, clock=clock)
    stalled = [admission.admit("m", Deadline(clock.now + 30)) for _ in range(2)]
    for permit in stalled:
        permit.enter(Stage.READING)  # bodies that never arrive (or trickle in)
    clock.now += 0.5
    with pytest.raises(Overloaded):
        admission.admit("m", Deadline(clock.now + 30))  # within the target they count
    clock.now += 0.6
    served = admission.admit("m", Deadline(clock.now + 30))  # past it they no longer hold the model's slots
    served.enter(Stage.READING)
    served.leave(Stage.READING)
    assert admission.in_flight("m") == 3
    assert admission.depth("m", Stage.READING) == 2
    for permit in stalled:  # a slow upload that completes goes on normally, and releases what it held
        permit.leave(Stage.READING)
        permit.release()
    served.release()
    assert admission.in_flight("m") == 0
    admission.admit("m", Deadline(clock.now + 30)).release()
