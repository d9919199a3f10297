"""Per-model counts the Prometheus histograms cannot give back exactly: requests by outcome (with their
durations), where each successful request spent its time, the time of the last one, and ONNX Runtime runs by exact
batch size. Read by the Open Inference Protocol's statistics extension (service/oip/statistics.py); fed at the same
seams as the metrics (the request span, service/dataplane/inference.py; each batch, service/observability.py's
ModelMetrics), with a request's stage times carried on its admission permit (RequestTimings).

Plain integers under one lock: each update is a few additions, far below a request's cost.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += ns


@dataclass(slots=True)
class RequestTimings:
    """Where one request's time went, in Triton's terms (wall clock, ns): `compute_input` decoding and
    preprocessing its images, `compute_infer` the ONNX Runtime runs that held any of them (a run shared with other
    requests counts whole, as in Triton), `queue` the rest of the time from its first image entering the batcher to
    its last one leaving, `compute_output` the decision on its rows."""

    compute_input_ns: int = 0
    compute_infer_ns: int = 0
    compute_output_ns: int = 0
    _decoded_in_runs_ns: int = 0  # the direct pipeline's decode, inside the batched span below
    _first_enqueued: float | None = None
    _last_finished: float | None = None

    def batch(self, enqueued: float, began: float, started: float, finished: float) -> None:
        """One run holding this request's image(s): enqueued (its earliest), began (decode on the inference
        thread, the direct pipeline; = started otherwise), started and finished running (perf_counter seconds)."""
        self.compute_input_ns += round((started - began) * 1e9)
        self._decoded_in_runs_ns += round((started - began) * 1e9)
        self.compute_infer_ns += round((finished - started) * 1e9)
        if self._first_enqueued is None or enqueued < self._first_enqueued:
            self._first_enqueued = enqueued
        if self._last_finished is None or finished > self._last_finished:
            self._last_finished = finished

    @property
    def queue_ns(self) -> int:
        if self._first_enqueued is None or self._last_finished is None:
            return 0
        batched = round((self._last_finished - self._first_enqueued) * 1e9)
        return max(0, batched - self.compute_infer_ns - self._decoded_in_runs_ns)


@dataclass(slots=True)
class ModelTally:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)  # these four: successful requests, as Triton counts them
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    last_inference_ms: int = 0  # milliseconds since the epoch of the last request that finished, 0 before any
    batches: dict[int, Duration] = field(default_factory=lambda: defaultdict(Duration))  # size -> ONNX runs


class InferenceTally:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, ModelTally] = defaultdict(ModelTally)

    def request(self, model: str, *, ok: bool, seconds: float, timings: RequestTimings | None = None) -> None:
        """One inference request (any protocol) finished: answered (ok) or refused/failed inside its span."""
        with self._lock:
            tally = self._models[model]
            (tally.success if ok else tally.fail).add(round(seconds * 1e9))
            tally.last_inference_ms = time.time_ns() // 1_000_000
            if ok:
                t = timings or RequestTimings()
                tally.queue.add(t.queue_ns)
                tally.compute_input.add(t.compute_input_ns)
                tally.compute_infer.add(t.compute_infer_ns)
                tally.compute_output.add(t.compute_output_ns)

    def batch(self, model: str, size: int, seconds: float) -> None:
        """One ONNX Runtime run of `size` images."""
        with self._lock:
            self._models[model].batches[size].add(round(seconds * 1e9))

    def snapshot(self, model: str) -> ModelTally:
        """A copy, consistent with itself."""
        with self._lock:
            tally = self._models.get(model) or ModelTally()
            copy = ModelTally(last_inference_ms=tally.last_inference_ms)
            for name in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
                d = getattr(tally, name)
                setattr(copy, name, Duration(d.count, d.ns))
            copy.batches = {size: Duration(d.count, d.ns) for size, d in sorted(tally.batches.items())}
            return copy
