"""MicroBatcher semantics, against a fake model (no ONNX): batches form up to the max size or the max wait,
every caller gets its own row, a full queue refuses, a failing run fails only its own batch, and callers that
gave up are never computed."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from functools import wraps

import numpy as np
import pytest

from service.dataplane.batching import MicroBatcher
from service.errors import Draining, InferenceFailed, InvalidImage, Overloaded


def sync(case: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run an async test in a fresh event loop (the suite has no asyncio plugin), bounded in time."""

    @wraps(case)
    def test() -> None:
        asyncio.run(asyncio.wait_for(case(), 10))  # type: ignore[arg-type]

    return test


class Recorder:
    """A fake model: answers each row with its own first value, records batch sizes and waits."""

    def __init__(self, delay_s: float = 0.0, fail_on: Callable[[np.ndarray], bool] | None = None) -> None:
        self.batches: list[list[float]] = []
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()
        self.observed: list[tuple[int, list[float], float]] = []

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.gate.wait(5)
        self.batches.append([float(v) for v in batch[:, 0, 0, 0]])
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on(batch):
            raise RuntimeError("boom")
        return np.stack([batch[:, 0, 0, 0], -batch[:, 0, 0, 0]], axis=1)

    def observe_batch(self, size: int, queue_waits_s: list[float], inference_s: float) -> None:
        self.observed.append((size, queue_waits_s, inference_s))


def tensor(value: float) -> np.ndarray:
    return np.full((3, 2, 2), value, dtype=np.float32)


def make(rec: Recorder, *, size: int = 4, wait_ms: float = 50.0, queue_max: int = 64) -> MicroBatcher:
    batcher = MicroBatcher(
        "m", rec.run, max_batch_size=size, max_wait_s=wait_ms / 1000, queue_max=queue_max, observer=rec
    )
    batcher.start()
    return batcher


@sync
async def test_batch_fills_to_max_size_and_rows_go_back_to_their_callers() -> None:
    rec = Recorder()
    batcher = make(rec, size=4, wait_ms=1000)
    rows = await asyncio.wait_for(asyncio.gather(*(batcher.submit(tensor(i)) for i in range(8))), 2)
    await batcher.stop()
    assert rec.batches == [[0, 1, 2, 3], [4, 5, 6, 7]]  # full batches, no waiting for the 1 s deadline
    assert [float(r[0]) for r in rows] == list(range(8))
    assert [float(r[1]) for r in rows] == [-float(i) for i in range(8)]
    assert [size for size, _, _ in rec.observed] == [4, 4]


@sync
async def test_partial_batch_leaves_after_max_wait() -> None:
    rec = Recorder()
    batcher = make(rec, size=8, wait_ms=50)
    started = time.perf_counter()
    rows = await asyncio.gather(*(batcher.submit(tensor(i)) for i in range(3)))
    elapsed = time.perf_counter() - started
    await batcher.stop()
    assert rec.batches == [[0, 1, 2]]
    assert 0.04 <= elapsed < 1.0
    assert [float(r[0]) for r in rows] == [0, 1, 2]
    size, waits, inference_s = rec.observed[0]
    assert size == 3 and len(waits) == 3 and all(w >= 0.04 for w in waits) and inference_s >= 0


@sync
async def test_zero_wait_runs_what_is_queued_without_waiting() -> None:
    rec = Recorder()
    batcher = make(rec, size=8, wait_ms=0)
    started = time.perf_counter()
    row = await batcher.submit(tensor(7))
    assert time.perf_counter() - started < 0.5
    await batcher.stop()
    assert float(row[0]) == 7 and rec.batches == [[7]]


@sync
async def test_requests_arriving_while_a_batch_runs_form_the_next_batch() -> None:
    rec = Recorder()
    rec.gate.clear()  # hold the first batch inside the model
    batcher = make(rec, size=4, wait_ms=0)
    first = asyncio.ensure_future(batcher.submit(tensor(0)))
    await asyncio.sleep(0.05)
    rest = [asyncio.ensure_future(batcher.submit(tensor(i))) for i in range(1, 4)]
    await asyncio.sleep(0.05)
    rec.gate.set()
    await asyncio.gather(first, *rest)
    await batcher.stop()
    assert rec.batches == [[0], [1, 2, 3]]


@sync
async def test_full_queue_refuses_at_once() -> None:
    rec = Recorder()
    rec.gate.clear()
    batcher = make(rec, size=1, wait_ms=0, queue_max=2)
    running = asyncio.ensure_future(batcher.submit(tensor(0)))
    await asyncio.sleep(0.05)  # taken off the queue, blocked in the model
    queued = [asyncio.ensure_future(batcher.submit(tensor(i))) for i in (1, 2)]
    await asyncio.sleep(0)
    assert batcher.depth == 2
    with pytest.raises(Overloaded):
        await batcher.submit(tensor(3))
    rec.gate.set()
    rows = await asyncio.gather(running, *queued)
    await batcher.stop()
    assert [float(r[0]) for r in rows] == [0, 1, 2]


@sync
async def test_failing_batch_fails_only_its_callers_and_the_worker_goes_on() -> None:
    rec = Recorder(fail_on=lambda batch: bool((batch[:, 0, 0, 0] == 13).any()))
    batcher = make(rec, size=2, wait_ms=1000)
    results = await asyncio.gather(*(batcher.submit(tensor(v)) for v in (12, 13, 14, 15)), return_exceptions=True)
    assert isinstance(results[0], InferenceFailed) and isinstance(results[1], InferenceFailed)
    assert [float(r[0]) for r in results[2:]] == [14, 15]  # type: ignore[index]
    after = await batcher.submit(tensor(16))  # the worker survived
    await batcher.stop()
    assert float(after[0]) == 16


@sync
async def test_wrong_row_count_is_an_inference_failure() -> None:
    batcher = MicroBatcher("m", lambda b: np.zeros((1, 2), np.float32), max_batch_size=2, max_wait_s=1, queue_max=8)
    batcher.start()
    results = await asyncio.gather(batcher.submit(tensor(1)), batcher.submit(tensor(2)), return_exceptions=True)
    await batcher.stop()
    assert all(isinstance(r, InferenceFailed) for r in results)


@sync
async def test_cancelled_callers_are_dropped_before_the_batch_runs() -> None:
    rec = Recorder()
    rec.gate.clear()
    batcher = make(rec, size=4, wait_ms=0)
    blocker = asyncio.ensure_future(batcher.submit(tensor(0)))
    await asyncio.sleep(0.05)
    waiting = [asyncio.ensure_future(batcher.submit(tensor(i))) for i in (1, 2, 3)]
    await asyncio.sleep(0)
    waiting[1].cancel()  # e.g. the request deadline passed or the client went away
    rec.gate.set()
    rows = await asyncio.gather(blocker, waiting[0], waiting[2])
    await batcher.stop()
    assert waiting[1].cancelled()
    assert rec.batches == [[0], [1, 3]]
    assert [float(r[0]) for r in rows] == [0, 1, 3]


@sync
async def test_stop_fails_queued_work_with_draining_and_refuses_new_work() -> None:
    rec = Recorder()
    rec.gate.clear()
    batcher = make(rec, size=1, wait_ms=0)
    running = asyncio.ensure_future(batcher.submit(tensor(0)))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(batcher.submit(tensor(1)))
    await asyncio.sleep(0)
    await batcher.stop()
    rec.gate.set()
    with pytest.raises(Draining):
        await queued
    with pytest.raises(Draining):
        await batcher.submit(tensor(2))
    running.cancel()


# --- prepared jobs (the direct pipeline): the tensor is made on the inference thread, just before its run ----------


@sync
async def test_a_prepared_job_is_made_and_run_on_the_inference_thread() -> None:
    rec = Recorder()
    batcher = make(rec, size=1, wait_ms=0)
    threads: list[str] = []

    def prepare() -> np.ndarray:
        threads.append(threading.current_thread().name)
        time.sleep(0.02)  # decoding: counted as neither queue wait nor inference
        return tensor(7)

    row = await batcher.submit_prepared(prepare)
    await batcher.stop()
    assert float(row[0]) == 7 and rec.batches == [[7]]
    assert threads == ["infer-m_0"]  # the model's own thread: no hand-off to the decode pool and back
    [(size, waits, inference_s)] = rec.observed
    assert size == 1 and waits[0] < 0.02 and inference_s < 0.02


@sync
async def test_a_prepared_job_raises_the_client_error_as_is_and_a_model_failure_as_inference_failed() -> None:
    rec = Recorder(fail_on=lambda batch: bool((batch[:, 0, 0, 0] == 13).any()))
    batcher = make(rec, size=1, wait_ms=0)

    def bad_image() -> np.ndarray:
        raise InvalidImage("not an image")

    with pytest.raises(InvalidImage, match="not an image"):
        await batcher.submit_prepared(bad_image)
    with pytest.raises(InferenceFailed):
        await batcher.submit_prepared(lambda: tensor(13))
    assert float((await batcher.submit_prepared(lambda: tensor(14)))[0]) == 14  # the worker goes on
    await batcher.stop()
    assert rec.batches == [[13], [14]]  # the bad image never reached the model


@sync
async def test_prepared_jobs_are_for_batch_size_one_only() -> None:
    batcher = make(Recorder(), size=4, wait_ms=0)
    with pytest.raises(AssertionError):
        await batcher.submit_prepared(lambda: tensor(1))
    await batcher.stop()
