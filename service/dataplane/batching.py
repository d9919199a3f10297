"""Per-model micro-batcher: a bounded queue in front of one inference thread.

Requests put their preprocessed tensor on the queue and await a future. One worker task takes the first
waiting tensor, gathers more until `max_batch_size` or `max_wait_s` passes, and runs them as one batch in a
dedicated thread, so the event loop never blocks on ONNX Runtime. A full queue refuses at once (Overloaded ->
503 + Retry-After) instead of letting latency grow without bound (admission keeps it from filling: the
queue only ever holds admitted work). A caller that gave up (disconnect, cancelled) or whose deadline has
passed has its tensor dropped before the batch runs, not computed for nobody; an admission permit travelling
with the tensor also counts it in the `queued` and `inference` stages.

Each job carries its request's trace (service/tracing/context.py, None when untraced), taken when it is queued:
a batch that ran is recorded once, as a span linked to every traced request it served, and in each of those
requests as its queue wait and its inference (service/tracing/spans.py RequestTrace.batch).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import structlog

from service.dataplane.admission import Permit, Stage
from service.dataplane.threads import lower_thread_priority
from service.errors import CatdogError, DeadlineExceeded, Draining, InferenceFailed, Overloaded
from service.tracing import context as tracing

if TYPE_CHECKING:
    from service.tracing.spans import RequestTrace

log = structlog.get_logger(__name__)


class BatchObserver(Protocol):
    def observe_batch(self, size: int, queue_waits_s: list[float], inference_s: float) -> None: ...


@dataclass(slots=True)
class _Job:
    tensor: np.ndarray | None  # None: `prepare` makes it, on the inference thread (submit_prepared)
    future: asyncio.Future[np.ndarray]
    permit: Permit | None = None
    prepare: Callable[[], np.ndarray] | None = None
    enqueued_at: float = field(default_factory=time.perf_counter)
    trace: RequestTrace | None = field(default_factory=tracing.current)


class MicroBatcher:
    def __init__(
        self,
        name: str,
        run: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch_size: int,
        max_wait_s: float,
        queue_max: int,
        observer: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=queue_max)
        self._observer = observer
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"infer-{name}", initializer=lower_thread_priority
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Images waiting (not yet in a running batch)."""
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._serve(), name=f"batcher-{self.name}")

    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    async def submit(self, tensor: np.ndarray, permit: Permit | None = None) -> np.ndarray:
        """Queue one [3, H, W] tensor; returns its output row. Raises Overloaded when the queue is full, and
        DeadlineExceeded when the permit's deadline passes before its batch runs."""
        return await self._enqueue(_Job(tensor, asyncio.get_running_loop().create_future(), permit))

    async def submit_prepared(self, prepare: Callable[[], np.ndarray], permit: Permit | None = None) -> np.ndarray:
        """Like submit, for a tensor `prepare` makes on the inference thread, just before its run: a request's
        decode and inference in one job, with no hand-off between threads (the `direct` pipeline, for one core,
        where the decode pool cannot overlap anything). Only without batching (max_batch_size 1). What `prepare`
        raises (a client's bad image) is raised here as it is."""
        assert self._max_batch_size == 1, "prepared jobs run one at a time"
        return await self._enqueue(_Job(None, asyncio.get_running_loop().create_future(), permit, prepare))

    async def _enqueue(self, job: _Job) -> np.ndarray:
        if self._task is None:
            raise Draining(f"model {self.name!r} is not accepting work")
        permit, future = job.permit, job.future
        if permit is not None:
            permit.check(Stage.QUEUED)
        try:
            self._queue.put_nowait(job)
        except asyncio.QueueFull:
            raise Overloaded(f"model {self.name!r} has {self._queue.maxsize} images waiting; retry shortly") from None
        if permit is not None:
            permit.enter(Stage.QUEUED)
        return await future

    async def stop(self) -> None:
        """Stop the worker; anything still queued fails with Draining."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if job.permit is not None:
                job.permit.leave(Stage.QUEUED)
            if not job.future.done():
                job.future.set_exception(Draining("the service is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _serve(self) -> None:
        while True:
            jobs = await self._gather()
            try:
                await self._run_batch(jobs)
            except Exception:
                log.exception("batch_failed", model=self.name)
                for job in jobs:  # whatever broke, no caller is left waiting for a batch that will never finish
                    if not job.future.done():
                        job.future.set_exception(InferenceFailed(f"model {self.name!r} failed to run"))

    async def _gather(self) -> list[_Job]:
        jobs = [await self._queue.get()]
        deadline = time.perf_counter() + self._max_wait_s
        while len(jobs) < self._max_batch_size:
            try:
                jobs.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return jobs

    async def _run_batch(self, jobs: list[_Job]) -> None:
        for job in jobs:
            if job.permit is not None:
                job.permit.leave(Stage.QUEUED)
        live = [job for job in jobs if self._wanted(job)]  # callers that gave up or ran out of time: dropped
        if not live:
            return
        for job in live:
            if job.permit is not None:
                job.permit.enter(Stage.INFERENCE)
        try:
            await self._infer(live)
        finally:
            for job in live:
                if job.permit is not None:
                    job.permit.leave(Stage.INFERENCE)

    @staticmethod
    def _wanted(job: _Job) -> bool:
        if job.future.done():
            return False
        if job.permit is not None and job.permit.expired(Stage.INFERENCE):
            error = DeadlineExceeded("the deadline passed in the batch queue; the work was dropped")
            job.future.set_exception(error)
            if job.trace is not None:
                job.trace.record("catdog.queue", job.enqueued_at, time.perf_counter(), error=error)
            return False
        return True

    async def _infer(self, live: list[_Job]) -> None:
        began = started = time.perf_counter()  # a prepared job begins (decodes) on the thread before it runs
        loop = asyncio.get_running_loop()
        try:
            if live[0].prepare is not None:
                outcome = await loop.run_in_executor(self._executor, self._prepare_and_run, live[0].prepare)
                if isinstance(outcome, CatdogError):  # the client's image, not the model: its own error
                    live[0].future.set_exception(outcome)
                    return
                outputs, began, started = outcome
            else:
                # One image: a view with a batch axis, not a copy (np.stack copies even one 600 KB tensor).
                tensors = [job.tensor for job in live if job.tensor is not None]
                batch = tensors[0][np.newaxis] if len(tensors) == 1 else np.stack(tensors)
                outputs = await loop.run_in_executor(self._executor, self._run, batch)
            if outputs.shape[0] != len(live):
                raise ValueError(f"model returned {outputs.shape[0]} rows for a batch of {len(live)}")
        except Exception as exc:
            log.error("inference_failed", model=self.name, batch_size=len(live), error=str(exc)[:300])
            self._trace(live, began, started, time.perf_counter(), InferenceFailed(f"model {self.name!r} failed"))
            for job in live:
                if not job.future.done():
                    job.future.set_exception(InferenceFailed(f"model {self.name!r} failed to run"))
            return
        finished = time.perf_counter()
        self._trace(live, began, started, finished)
        if self._observer is not None:  # inference time only: a prepared job's decode is in preprocess_seconds
            waits = [began - job.enqueued_at for job in live]
            self._observer.observe_batch(len(live), waits, finished - started)
        enqueued: dict[int, tuple[Permit, float]] = {}  # each request in the run once, with its earliest image
        for job in live:
            if job.permit is not None:
                earliest = enqueued.get(id(job.permit), (job.permit, job.enqueued_at))[1]
                enqueued[id(job.permit)] = (job.permit, min(earliest, job.enqueued_at))
        for permit, at in enqueued.values():
            permit.timings.batch(at, began, started, finished)
        for job, row in zip(live, outputs, strict=True):
            if not job.future.done():
                job.future.set_result(row)

    def _trace(
        self, live: list[_Job], began: float, started: float, finished: float, error: CatdogError | None = None
    ) -> None:
        traced = [(job.trace, job.enqueued_at) for job in live if job.trace is not None]
        if traced:
            traced[0][0].batch(self.name, traced, len(live), began, started, finished, error)

    def _prepare_and_run(self, prepare: Callable[[], np.ndarray]) -> tuple[np.ndarray, float, float] | CatdogError:
        """On the inference thread: make the tensor, then run it; (outputs, when the job began, when the run
        began), or the service error `prepare` raised (an undecodable image...), returned so that it reaches its
        caller as is."""
        began = time.perf_counter()
        try:
            tensor = prepare()
        except CatdogError as exc:
            return exc
        started = time.perf_counter()
        return self._run(tensor[np.newaxis]), began, started
