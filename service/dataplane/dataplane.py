"""The data plane: the one object every protocol adapter is handed (the REST routers and middlewares, the gRPC
servicer and health, the page, `catdog predict`). It owns the repository, the classifier, admission, the
lifecycle and the metrics, and answers the questions every adapter asks, each rule written here once:

- `ready()`: may this replica take traffic (every probe: /readyz, /v2/health/ready, gRPC health);
- `model_for_work(name, version)`: may this model take work now, as a `ReadyModel` the request holds for its
  whole life (draining 503, unknown model or version 404, not ready 503); `takes_work(name)` the same, asked by
  the REST door without raising;
- `admit(...)` and `span(...)`: admission, the in-flight gauge, the duration by protocol and the deadline;
- `classify(...)` / `classify_tensors(...)`: the request's limits (image count, empty input, the FP32 shape),
  then the classifier;
- `rejected(model, exc)`: the one place a refusal is counted, whichever transport answered it.

Every adapter does five steps in this order: parse its wire format, admit (`model_for_work`, then `span`), read
the body, classify, encode. Protocol-free: the data plane takes seconds and raises the taxonomy of
service/errors.py; what an HTTP header or a gRPC status means is the adapters' business. Tracing hooks
`model_for_work` and `span`, the seam both transports go through; access control (service/security/) is decided
before any of this, at each transport's door, from the path or method and the key alone (the body unread).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np

from service import observation
from service.dataplane.admission import Admission, Deadline, Permit
from service.dataplane.inference import Classifier, Prediction, Upload
from service.dataplane.postprocess import Answer
from service.dataplane.repository import ReadyModel, ServedModel
from service.errors import (
    CatdogError,
    DeadlineExceeded,
    Draining,
    EmptyInput,
    MalformedRequest,
    TooManyFiles,
)
from service.lifecycle import Lifecycle, Phase
from service.models.store import ModelStore
from service.observability import ServiceMetrics
from service.observation import RequestObserver
from service.payloadlog import record as payload_log
from service.settings import Settings
from service.tracing import context as tracing
from service.version import package_version


@dataclass(frozen=True, eq=False)
class DataPlane:
    """What serves, built once per app (`from_settings`); its parts are fixed, their state is theirs."""

    settings: Settings
    repository: ModelStore
    classifier: Classifier
    admission: Admission
    lifecycle: Lifecycle
    metrics: ServiceMetrics
    # Tracing and payload logging: the per-request seam both transports call (service/observation.py); None, and
    # nothing on the request path, when both are off.
    observer: RequestObserver | None = None

    @classmethod
    def from_settings(cls, settings: Settings, metrics: ServiceMetrics | None = None) -> DataPlane:
        """Builds everything without I/O (the models load in `load`)."""
        metrics = metrics or ServiceMetrics()
        admission = Admission(
            metrics,
            target_latency_s=settings.admission_target_latency_s,
            min_limit=settings.admission_min_limit,
            max_limit=settings.admission_max_limit,
            max_body_bytes=settings.admission_max_body_bytes,
        )
        return cls(
            settings,
            ModelStore(settings, metrics),
            Classifier.from_settings(settings, metrics),
            admission,
            Lifecycle(),
            metrics,
            observation.from_settings(settings, metrics.registry, package_version()),
        )

    # Life.
    async def load(self) -> None:
        """Load and warm every discovered model; serving from then on unless a drain began meanwhile. A
        StartupError (a provider refused) propagates: serving on anything else would lie."""
        await self.repository.load_all()
        if self.lifecycle.phase is Phase.STARTING:
            self.lifecycle.phase = Phase.SERVING

    async def close(self) -> None:
        await self.repository.stop()
        self.classifier.close()

    # Health.
    def ready(self) -> bool:
        """Models loaded (all, or at least one, by `require_all_models`) and not draining."""
        return self.repository.ready and not self.lifecycle.draining

    def known(self, name: str, version: str | None = None) -> ServedModel:
        """The repository's slot for `name` (in any state), or for one ready version; ModelNotFound (404) for a name
        or version it lacks."""
        return self.repository.known(name, version)

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """False while the model loads, after it failed, and while draining; ModelNotFound (404) if unknown."""
        return self.known(name, version).serving is not None and not self.lifecycle.draining

    # Admission.
    def model_for_work(self, name: str, version: str | None = None) -> ReadyModel:
        """The model to run this request on, refused before any body is read: draining (503), unknown model or
        version (404), not ready (503). The request keeps this reference until it is answered."""
        if self.lifecycle.draining:
            raise Draining("the service is shutting down; retry on another replica")
        return self.repository.get(name, version)  # held until the request's task ends (service/models/store.py)

    def takes_work(self, name: str) -> bool:
        """`model_for_work` as a question (the REST door's: it leaves every refusal but overload to the route)."""
        try:
            self.model_for_work(name)
        except CatdogError:
            return False
        return True

    def admit(self, model: str, timeout_s: float | None = None, *, body_bytes: int | None = None) -> Permit:
        """Admit one request or raise Overloaded at once. `timeout_s`: the client's, capped by request_timeout_s;
        `body_bytes`: what its body will hold in memory (None: the upload limit)."""
        size = self.settings.max_upload_bytes if body_bytes is None else body_bytes
        deadline = Deadline.within(timeout_s, cap=self.settings.request_timeout_s)
        return self.admission.admit(model, deadline, body_bytes=size)

    @contextlib.asynccontextmanager
    async def span(
        self,
        model: ReadyModel,
        protocol: str,
        *,
        permit: Permit | None = None,
        timeout_s: float | None = None,
        body_bytes: int | None = None,
    ) -> AsyncIterator[Permit]:
        """One inference request's span, its body's reading included, the same for every protocol: admission
        (unless the adapter's door already admitted it and passes its permit), the in-flight gauge, the request
        duration by protocol and outcome (service/dataplane/tally.py), and the deadline (request_timeout_s,
        shortened by the client's)."""
        cap = self.settings.request_timeout_s
        if permit is None:
            permit = self.admit(model.name, timeout_s, body_bytes=body_bytes)
        # The payload log's record of this request (None: not logged). Refusals are not logged: under overload that
        # would add work exactly when there is least room for it.
        record = payload_log.current()
        if record is not None:
            record.model, record.protocol = model.name, protocol
        in_flight = self.metrics.in_flight.labels(model.name)
        in_flight.inc()
        started = time.perf_counter()
        ok = False
        try:
            with permit:
                async with asyncio.timeout(permit.deadline.remaining()):
                    yield permit
            ok = True
        except TimeoutError:
            budget = cap if timeout_s is None else min(timeout_s, cap)
            timeout = DeadlineExceeded(f"no answer within {budget:g} s")
            if record is not None:
                record.fail(timeout)
            raise timeout from None
        except CatdogError as exc:
            if record is not None:
                record.fail(exc)
            raise
        finally:
            in_flight.dec()
            seconds = time.perf_counter() - started
            trace = tracing.current()  # a sampled request's latency links to its trace (an OpenMetrics exemplar)
            self.metrics.request_seconds.labels(model.name, protocol).observe(
                seconds, None if trace is None else trace.exemplar
            )
            # The outcome and where the time went (the permit carries it): Triton's statistics (oip/statistics.py).
            self.metrics.tally.request(model.name, ok=ok, seconds=seconds, timings=permit.timings)

    # Work.
    async def classify(
        self, model: ReadyModel, uploads: list[Upload], permit: Permit | None = None
    ) -> list[Prediction]:
        """Encoded images, within the request's limits (at least one, none empty, at most max_files_per_request)."""
        self._check_count(len(uploads))
        if empty := [u.filename or f"#{i + 1}" for i, u in enumerate(uploads) if not u.data]:
            raise EmptyInput(f"empty image(s): {', '.join(empty)}")
        return await self.classifier.classify(model, uploads, permit)

    async def classify_tensors(
        self, model: ReadyModel, batch: np.ndarray, permit: Permit | None = None, *, name: str | None = None
    ) -> list[Answer]:
        """A preprocessed batch: float32 [N, 3, H, W] in the card's input size, finite, N within the limits.
        `name`: the input's name in the client's terms, for the message (default: the card's)."""
        card = model.card
        expected = (3, card.input.height, card.input.width)
        if batch.dtype != np.float32 or batch.ndim != 4 or batch.shape[1:] != expected:
            raise MalformedRequest(
                f"input {name or card.input.name!r} is FP32 [-1, {', '.join(map(str, expected))}], "
                f"not {batch.dtype} {list(batch.shape)}"
            )
        self._check_count(batch.shape[0])
        if not np.isfinite(batch).all():
            raise MalformedRequest("the input tensor holds NaN or infinite values")
        return await self.classifier.classify_tensors(model, batch, permit)

    def _check_count(self, count: int) -> None:
        limit = self.settings.max_files_per_request
        if not count:
            raise EmptyInput("the request holds no image")
        if count > limit:
            raise TooManyFiles(f"{count} images in one request; the limit is {limit}")

    # Refusals.
    def rejected(self, model: str | None, exc: CatdogError) -> None:
        """Count a refusal in catdog_rejected_requests_total (every transport's error path calls this)."""
        if exc.reason:
            self.metrics.rejected.labels(model or "-", exc.reason).inc()
