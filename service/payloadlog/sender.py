"""The payload logger: a bounded queue and one sender thread, so a slow or dead sink never slows or fails
inference. A full queue (by events or by the bytes they keep alive) drops the new record at once and counts it;
a failed send is retried a few times with backoff, then counted as failed and let go.

Metrics: catdog_payload_log_events_total{kind, result=sent|failed|dropped}, catdog_payload_log_retries_total,
catdog_payload_log_send_seconds (one POST), catdog_payload_log_queue_depth.
"""

from __future__ import annotations

import http.client
import queue
import random
import ssl
import threading
import time
from urllib.parse import urlsplit

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from service.payloadlog.events import Event, events
from service.payloadlog.record import PayloadRecord

log = structlog.get_logger(__name__)

MODES = ("all", "request", "response")
SEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PayloadMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "catdog_payload_log_events",
            "Payload log events by kind (request, response) and result: sent, failed (retries spent), dropped "
            "(queue full).",
            ["kind", "result"],
            registry=registry,
        )
        self.retries = Counter("catdog_payload_log_retries", "Payload log sends retried.", registry=registry)
        self.send_seconds = Histogram(
            "catdog_payload_log_send_seconds", "One POST of a payload event.", buckets=SEND_BUCKETS, registry=registry
        )
        self.depth = Gauge("catdog_payload_log_queue_depth", "Requests waiting to be sent.", registry=registry)


class PayloadLogger:
    def __init__(
        self,
        url: str,
        metrics: PayloadMetrics,
        *,
        mode: str = "all",
        sample_rate: float = 1.0,
        max_bytes: int = 64 * 1024,
        source: str = "urn:catdog",
        queue_max: int = 1000,
        queue_bytes: int = 64 * 1024 * 1024,
        timeout_s: float = 2.0,
        retries: int = 2,
        backoff_s: float = 0.1,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"payload log mode must be one of {MODES}, not {mode!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"payload log URL must be http(s)://host[:port]/path, not {url!r}")
        self.url = url
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.metrics = metrics
        self.mode = mode
        self.sample_rate = sample_rate
        self.max_bytes = max_bytes
        self.source = source
        self.kinds = [kind for kind in ("request", "response") if mode in ("all", kind)]
        self._queue: queue.Queue[PayloadRecord] = queue.Queue(maxsize=queue_max)
        self._queue_bytes = queue_bytes
        self._held = 0
        self._held_lock = threading.Lock()
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = backoff_s
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: http.client.HTTPConnection | None = None

    # The request path.
    def begin(self, request_id: str) -> PayloadRecord | None:
        """A record for this request (the data plane fills in its model, version and protocol), or None when it is
        not sampled."""
        if self.sample_rate < 1.0 and random.random() >= self.sample_rate:
            return None
        return PayloadRecord(request_id)

    def submit(self, record: PayloadRecord) -> bool:
        """Queue the record without waiting; False (and counted as dropped) when the queue is full."""
        size = record.held_bytes
        with self._held_lock:
            room = self._held + size <= self._queue_bytes
            if room:
                self._held += size
        if room:
            try:
                self._queue.put_nowait(record)
                self.metrics.depth.inc()
                return True
            except queue.Full:
                self._release(size)
        for kind in self.kinds:
            self.metrics.events.labels(kind, "dropped").inc()
        return False

    # The sender thread.
    def start(self) -> None:
        if self._thread is None:
            self._stopping.clear()
            self._thread = threading.Thread(target=self._serve, name="payload-log", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Send what is queued for up to `timeout_s`, then stop (what is left is counted as dropped)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join(timeout_s)
        while True:
            try:
                record = self._queue.get_nowait()
            except queue.Empty:
                break
            self._done(record)
            for kind in self.kinds:
                self.metrics.events.labels(kind, "dropped").inc()
        self._close()

    def _serve(self) -> None:
        while True:
            try:
                record = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            try:
                for kind, event in events(record, self.mode, self.source, self.max_bytes):
                    result = "sent" if self._send(event) else "failed"
                    self.metrics.events.labels(kind, result).inc()
            except Exception:  # a bug here must not stop the logger
                log.exception("payload_log_failed", request_id=record.request_id)
            finally:
                self._done(record)

    def _done(self, record: PayloadRecord) -> None:
        self.metrics.depth.dec()
        self._release(record.held_bytes)

    def _release(self, size: int) -> None:
        with self._held_lock:
            self._held -= size

    def _send(self, event: Event) -> bool:
        headers, body = event
        error = ""
        for attempt in range(self._retries + 1):
            if attempt:
                self.metrics.retries.inc()
                if self._stopping.wait(self._backoff_s * 2 ** (attempt - 1)):
                    return False
            started = time.perf_counter()
            try:
                status = self._post(headers, body)
            except (OSError, http.client.HTTPException) as exc:
                self._close()
                status = None
                error = str(exc)[:200]
            finally:
                self.metrics.send_seconds.observe(time.perf_counter() - started)
            if status is not None and 200 <= status < 300:
                return True
            if status is not None and status < 500 and status != 429:
                log.warning("payload_log_refused", status=status, url=self.url)
                return False  # the sink refuses this event: sending it again changes nothing
            if status is not None:
                error = f"HTTP {status}"
        log.warning("payload_log_send_failed", url=self.url, error=error, attempts=self._retries + 1)
        return False

    def _post(self, headers: dict[str, str], body: bytes) -> int:
        connection = self._connection
        if connection is None:
            if self._scheme == "https":
                context = ssl.create_default_context()
                connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout_s, context=context
                )
            else:
                connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
            self._connection = connection
        connection.request("POST", self._path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        if response.will_close:
            self._close()
        return response.status

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
