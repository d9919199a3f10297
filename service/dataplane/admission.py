"""Admission control: refuse at the door, before any expensive work, what cannot be served in time.

Protocol-free: every adapter (catdog's REST routes, the Open Inference Protocol over REST and gRPC) calls the
same API before it reads a request body or decodes anything::

    deadline = Deadline.within(client_timeout_s, cap=settings.request_timeout_s)   # None: the cap
    async with admission.admit(model_name, deadline, body_bytes=declared_length) as permit:
        with permit.track(Stage.READING):
            body = await read_body()                     # only admitted requests' bodies are ever read
        predictions = await classifier.classify(model, uploads, permit)   # decode, batch queue, inference

`admit` raises `Overloaded` (503, reason `overloaded`, `Retry-After` from the measured drain time) at once;
leaving the block releases the slot and records the request's service time. The permit carries the deadline
through every stage: the decode pool, the batch queue and the batcher drop work whose deadline has passed
(`Permit.expired`), so nothing is computed for nobody.

The model, per model (so one hot model cannot starve another), all measured, none hand-tuned:

- **throughput** `X`: requests completed per second *while the model had work* (completions / busy time,
  measured over windows of at least `WINDOW_S`, averaged with a time constant of `SMOOTHING_S`), i.e. what
  the machine actually does, sharing with other models included;
- **limit** `L = X * target_latency`, clamped to `[min_limit, max_limit]` (Little's law: with `L` admitted
  requests and `X` completions per second, each waits about `L / X = target_latency`). It rises when
  requests get faster (or the other model goes quiet) and falls when they get slower;
- a request is admitted when fewer than `L` are in flight **and** its estimated completion, the work ahead of
  it plus itself at the measured rate (`(in_flight + 1) / X`), fits in its deadline. A request still reading
  its body after `target_latency` stops counting against `L` (it keeps its bytes): a slow or stalled upload,
  or a few sockets that never finish theirs, cannot hold the model's slots;
- a global byte budget bounds the bodies of admitted requests in flight (declared Content-Length, or the
  upload limit when unknown); one request alone is always admitted, so no size below the upload limit is
  refused forever;
- `Retry-After` is drawn uniformly between the time to drain the admitted work (`in_flight / X`, at least
  1 s) and the time to drain everyone who wants in: the admitted work plus the clients refused earlier and
  still waiting out their own Retry-After (`(in_flight + waiting) / X`). A crowd of 600 on a model that
  answers 30 a second is told to come back over the next 20 s, not all in the next second: the returning
  clients keep the model busy without costing most of its core in refusals.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

from prometheus_client import Counter, Gauge

from service.dataplane.tally import RequestTimings
from service.errors import DeadlineExceeded, Overloaded
from service.observability import ServiceMetrics
from service.tracing import context as tracing

WINDOW_S = 0.5  # throughput is sampled over windows at least this long (and with at least one completion)
SMOOTHING_S = 1.5  # time constant of the throughput's moving average: a change is followed within seconds
MAX_RETRY_AFTER_S = 30
MAX_WAITING_TRACKED = 10_000  # refused clients remembered (a client that ignores Retry-After counts each time)


class Stage(enum.StrEnum):
    """Where an admitted request's work is: each is bounded by the admitted count, and each drops expired work."""

    READING = "reading"
    DECODING = "decoding"
    QUEUED = "queued"
    INFERENCE = "inference"


REFUSALS = ("limit", "deadline", "memory")


@dataclass(frozen=True, slots=True)
class Deadline:
    """A point on the monotonic clock by which the answer is due; it travels with the work."""

    expires_at: float

    @classmethod
    def within(cls, seconds: float | None, *, cap: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        """The client's timeout (e.g. X-Request-Timeout, a gRPC deadline) capped by the service's own."""
        return cls(clock() + (cap if seconds is None else min(seconds, cap)))

    def remaining(self, clock: Callable[[], float] = time.monotonic) -> float:
        return self.expires_at - clock()

    def expired(self, clock: Callable[[], float] = time.monotonic) -> bool:
        return clock() >= self.expires_at


@dataclass(frozen=True, slots=True)
class _GateSeries:
    """One model's admission metric children, resolved once: a request moves through several stages and each
    move updates a gauge, so looking the children up by label on every move cost more than the moves."""

    admissions: dict[str, Counter]
    depth: dict[Stage, Gauge]
    expired: dict[Stage, Counter]
    limit: Gauge
    throughput: Gauge

    @classmethod
    def of(cls, metrics: ServiceMetrics, model: str) -> _GateSeries:
        depth = {stage: metrics.stage_depth.labels(model, stage.value) for stage in Stage}
        for gauge in depth.values():
            gauge.set(0)
        results = ("admitted", *(f"refused_{reason}" for reason in REFUSALS))
        return cls(
            admissions={result: metrics.admissions.labels(model, result) for result in results},
            depth=depth,
            expired={stage: metrics.expired.labels(model, stage.value) for stage in Stage},
            limit=metrics.admission_limit.labels(model),
            throughput=metrics.admission_throughput.labels(model),
        )


class _Gate:
    """One model's admission state and measurements."""

    def __init__(self, model: str, now: float) -> None:
        self.model = model
        self.in_flight = 0
        self.rate: float | None = None  # completions per busy second (EWMA)
        self.window_start = now
        self.window_done = 0
        self.window_busy = 0.0
        self.busy_since: float | None = None
        self.depth = dict.fromkeys(Stage, 0)
        self.retry_due: list[float] = []  # heap: when each refused client was told to come back
        self.readers: dict[Permit, float] = {}  # reading their body, in arrival order -> since when
        self.slow_readers: set[Permit] = set()  # reading for longer than the target latency
        self.series: _GateSeries | None = None  # its metric children, when the admission has metrics

    def charged(self, now: float, patience_s: float) -> int:
        """In flight, less the requests still reading a body after `patience_s`: a slow (or stalled) upload
        keeps its memory reservation but stops holding a slot, so a few stalled sockets cannot take them all."""
        overdue = []
        for permit, since in self.readers.items():  # in arrival order: stop at the first one still in time
            if now - since < patience_s:
                break
            overdue.append(permit)
        for permit in overdue:
            del self.readers[permit]
            self.slow_readers.add(permit)
        return self.in_flight - len(self.slow_readers)

    def waiting(self, now: float) -> int:
        """Refused clients still waiting out their Retry-After."""
        while self.retry_due and self.retry_due[0] <= now:
            heapq.heappop(self.retry_due)
        return len(self.retry_due)

    def roll(self, now: float) -> None:
        """Close the measurement window when it is long enough and saw a completion."""
        if now - self.window_start < WINDOW_S or not self.window_done:
            return
        busy = self.window_busy + (now - self.busy_since if self.busy_since is not None else 0.0)
        if busy > 0:
            sample = self.window_done / busy
            weight = 1.0 - math.exp(-(now - self.window_start) / SMOOTHING_S)  # long windows weigh more
            self.rate = sample if self.rate is None else self.rate + weight * (sample - self.rate)
        self.window_start, self.window_done, self.window_busy = now, 0, 0.0
        if self.busy_since is not None:
            self.busy_since = now


class Admission:
    """Per-model adaptive concurrency limits, deadline checks and a global bound on bodies in flight."""

    def __init__(
        self,
        metrics: ServiceMetrics | None = None,
        *,
        target_latency_s: float = 1.0,
        min_limit: int = 8,
        max_limit: int = 64,
        max_body_bytes: int = 128 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.target_latency_s = target_latency_s
        self.min_limit = min(min_limit, max_limit)
        self.max_limit = max_limit
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        self.body_bytes = 0
        self._gates: dict[str, _Gate] = {}

    def limit(self, model: str) -> int:
        """The model's concurrency limit now: measured throughput x target latency, within [min, max]."""
        gate = self._gate(model)
        if gate.rate is None:
            return self.min_limit
        return max(self.min_limit, min(self.max_limit, math.floor(gate.rate * self.target_latency_s)))

    def throughput(self, model: str) -> float | None:
        """Measured completions per second while the model had work (None before the first window closes)."""
        return self._gate(model).rate

    def in_flight(self, model: str) -> int:
        return self._gate(model).in_flight

    def depth(self, model: str, stage: Stage) -> int:
        return self._gate(model).depth[stage]

    def admit(self, model: str, deadline: Deadline, *, body_bytes: int = 0) -> Permit:
        """Admit one request for `model` or raise Overloaded at once. `body_bytes`: what its body will hold in
        memory (declared Content-Length, else the upload limit). Use the permit as a context manager."""
        traced_from = time.perf_counter()
        now = self.clock()
        gate = self._gate(model)
        gate.roll(now)
        limit = self.limit(model)
        self._publish(gate, limit)
        reason: str | None = None
        if gate.charged(now, self.target_latency_s) >= limit:
            reason = "limit"
        elif gate.rate is not None and (gate.in_flight + 1) / gate.rate > deadline.expires_at - now:
            reason = "deadline"
        elif self.body_bytes and self.body_bytes + body_bytes > self.max_body_bytes:
            reason = "memory"
        trace = tracing.current()
        if trace is not None:  # admission's `catdog.admission` span: the decision, and the limit it was made under
            result = f"refused_{reason}" if reason else "admitted"
            attributes: dict[str, str | int] = {
                "catdog.model": model,
                "catdog.admission.result": result,
                "catdog.admission.limit": limit,
            }
            trace.record("catdog.admission", traced_from, time.perf_counter(), attributes)
        if reason is not None:
            self._count(model, f"refused_{reason}")
            retry_after = self.retry_after_s(model)
            if len(gate.retry_due) < MAX_WAITING_TRACKED:
                heapq.heappush(gate.retry_due, now + retry_after)
            raise Overloaded(self._message(gate, reason, limit), retry_after_s=retry_after)
        gate.in_flight += 1
        if gate.busy_since is None:
            gate.busy_since = now
        self.body_bytes += body_bytes
        self._count(model, "admitted")
        self._publish(gate, limit)
        return Permit(self, gate, deadline, body_bytes)

    def retry_after_s(self, model: str) -> int:
        """Whole seconds, drawn between the admitted work's drain time and everyone's (see the module doc)."""
        gate = self._gate(model)
        rate = gate.rate or self.min_limit / self.target_latency_s  # before any measurement: the initial limit's
        low = max(1.0, gate.in_flight / rate)
        high = min(float(MAX_RETRY_AFTER_S), max(low, (gate.in_flight + gate.waiting(self.clock())) / rate))
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(random.uniform(low, high))))

    def _release(self, permit: Permit) -> None:
        gate = permit.gate
        now = self.clock()
        gate.in_flight -= 1
        gate.window_done += 1
        if gate.in_flight == 0 and gate.busy_since is not None:
            gate.window_busy += now - gate.busy_since
            gate.busy_since = None
        self.body_bytes -= permit.body_bytes
        gate.roll(now)
        self._publish(gate, self.limit(gate.model))

    def _gate(self, model: str) -> _Gate:
        gate = self._gates.get(model)
        if gate is None:
            gate = self._gates[model] = _Gate(model, self.clock())
            if self.metrics is not None:  # every series exists from the first request: rates are 0, not absent
                gate.series = _GateSeries.of(self.metrics, model)
        return gate

    def _count(self, model: str, result: str) -> None:
        series = self._gate(model).series
        if series is not None:
            series.admissions[result].inc()

    def _publish(self, gate: _Gate, limit: int) -> None:
        if gate.series is not None and self.metrics is not None:
            gate.series.limit.set(limit)
            gate.series.throughput.set(gate.rate or 0.0)
            self.metrics.body_bytes_in_flight.set(self.body_bytes)

    def _message(self, gate: _Gate, reason: str, limit: int) -> str:
        if reason == "limit":
            return f"model {gate.model!r} has {gate.in_flight} requests in progress (its limit now); retry shortly"
        if reason == "deadline":
            return f"model {gate.model!r} cannot answer within this request's deadline; retry shortly"
        return "too many request bodies in memory; retry shortly"

    def _move(self, gate: _Gate, leave: Stage | None, enter: Stage | None) -> None:
        for stage, step in ((leave, -1), (enter, 1)):
            if stage is not None:
                gate.depth[stage] += step
                if gate.series is not None:
                    gate.series.depth[stage].inc(step)


class Permit:
    """One admitted request. Releases its slot (and body bytes) when the `with`/`async with` block ends;
    `track` counts the work in each stage; `expired` tells a stage to drop the work (and counts the drop)."""

    __slots__ = ("admission", "body_bytes", "deadline", "gate", "released", "timings")

    def __init__(self, admission: Admission, gate: _Gate, deadline: Deadline, body_bytes: int) -> None:
        self.admission = admission
        self.gate = gate
        self.deadline = deadline
        self.body_bytes = body_bytes
        self.released = False
        self.timings = RequestTimings()  # where the request's time went (service/dataplane/tally.py)

    @property
    def model(self) -> str:
        return self.gate.model

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.admission._release(self)

    def __enter__(self) -> Permit:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    async def __aenter__(self) -> Permit:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    @contextlib.contextmanager
    def track(self, stage: Stage) -> Iterator[None]:
        """Count the work in `stage` for the block; a traced request's body read is its `catdog.read` span."""
        self.enter(stage)
        try:
            if stage is Stage.READING:
                with tracing.stage("catdog.read", **{"catdog.model": self.gate.model}):
                    yield
            else:
                yield
        finally:
            self.leave(stage)

    def enter(self, stage: Stage) -> None:
        if stage is Stage.READING:
            self.gate.readers[self] = self.admission.clock()
        self.admission._move(self.gate, None, stage)

    def leave(self, stage: Stage) -> None:
        if stage is Stage.READING:
            self.gate.readers.pop(self, None)
            self.gate.slow_readers.discard(self)
        self.admission._move(self.gate, stage, None)

    def expired(self, stage: Stage) -> bool:
        """True when the deadline has passed before `stage` (the caller drops the work); counted per stage."""
        if not self.deadline.expired(self.admission.clock):
            return False
        if self.gate.series is not None:
            self.gate.series.expired[stage].inc()
        return True

    def check(self, stage: Stage) -> None:
        """Raise DeadlineExceeded (504) instead of starting `stage` for nobody."""
        if self.expired(stage):
            raise DeadlineExceeded(f"the deadline passed before {stage.value}; the work was dropped")
