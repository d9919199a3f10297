"""structlog JSON logs and the service's own Prometheus metrics (names are a contract: docs/architecture.md)."""

from __future__ import annotations

import logging
import sys

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    platform_collector,
    process_collector,
)

from service.dataplane.tally import InferenceTally

# Millisecond-scale latency buckets (seconds): 1 ms .. 10 s.
LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.0,
    5.0,
    10.0,
)
CONFIDENCE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
BYTES_BUCKETS = (1e3, 1e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2.5e6, 5e6, 1e7, 2.5e7)
LOAD_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
PIXEL_BUCKETS = (1e3, 1e4, 1e5, 3e5, 1e6, 2e6, 4e6, 8e6, 1.2e7, 2.4e7, 5e7)


# Tracebacks as JSON, without each frame's local variables: those may hold uploaded bytes, and are slow to render.
_DICT_TRACEBACKS = structlog.processors.ExceptionRenderer(
    structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
)


def configure_logging(level: str, fmt: str) -> None:
    """Route structlog and the standard library (uvicorn included) through one JSON (or console) renderer."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        # A line below the level is dropped before any processor formats it (every request has an access line).
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    exc_processor: list[structlog.types.Processor] = [] if fmt == "console" else [_DICT_TRACEBACKS]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *exc_processor, renderer],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # library warnings become log lines too: stdout stays one JSON object a line
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our access line replaces uvicorn's.
    logging.getLogger("uvicorn.access").handlers[:] = []
    logging.getLogger("uvicorn.access").propagate = False


class ModelMetrics:
    """The metric children of one model's batches, resolved once so the hot path does no label lookups."""

    def __init__(self, model: str, metrics: ServiceMetrics) -> None:
        self.model = model
        self._tally = metrics.tally
        self._batch_size = metrics.batch_size.labels(model)
        self._inference = metrics.inference_seconds.labels(model)
        self._queue_wait = metrics.queue_wait_seconds.labels(model)

    def observe_batch(self, size: int, queue_waits_s: list[float], inference_s: float) -> None:
        self._batch_size.observe(size)
        self._inference.observe(inference_s)
        self._tally.batch(self.model, size, inference_s)
        for seconds in queue_waits_s:
            self._queue_wait.observe(seconds)


class ServiceMetrics:
    """Every metric the service exports, registered in one registry owned by the app (tests build many)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series: unused, double the scrape
        self.registry = registry or CollectorRegistry()
        self.tally = InferenceTally()  # exact per-model counts beside the histograms (service/dataplane/tally.py)
        process_collector.ProcessCollector(registry=self.registry)
        platform_collector.PlatformCollector(registry=self.registry)
        gc_collector.GCCollector(registry=self.registry)
        r = self.registry
        self.request_seconds = Histogram(
            "catdog_request_duration_seconds",
            "End-to-end time of a prediction request, by protocol: catdog (its own routes), oip_rest, oip_grpc.",
            ["model", "protocol"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.preprocess_seconds = Histogram(
            "catdog_preprocess_duration_seconds",
            "Decode, validate and preprocess one image.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "catdog_queue_wait_seconds",
            "Time an image waited for its batch to start.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "catdog_inference_duration_seconds",
            "One ONNX Runtime run (one batch).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "catdog_batch_size", "Images per ONNX Runtime run.", ["model"], buckets=BATCH_BUCKETS, registry=r
        )
        self.predictions = Counter("catdog_predictions", "Answers given, by label.", ["model", "label"], registry=r)
        self.confidence = Histogram(
            "catdog_prediction_confidence",
            "Confidence of the answer.",
            ["model"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "catdog_requests_in_flight", "Prediction requests being handled now.", ["model"], registry=r
        )
        self.rejected = Counter(
            "catdog_rejected_requests", "Requests refused, by reason.", ["model", "reason"], registry=r
        )
        self.image_bytes = Histogram(
            "catdog_image_bytes", "Size of each uploaded image.", ["model"], buckets=BYTES_BUCKETS, registry=r
        )
        self.image_pixels = Histogram(
            "catdog_image_pixels",
            "Width x height of each decoded image.",
            ["model"],
            buckets=PIXEL_BUCKETS,
            registry=r,
        )
        self.model_info = Gauge(
            "catdog_model_info",
            "The model being served (value 1): version, ONNX file hash, execution provider, precision.",
            ["model", "version", "sha256", "provider", "precision"],
            registry=r,
        )
        self.model_ready = Gauge(
            "catdog_model_ready", "1 once the model is loaded and warmed up.", ["model"], registry=r
        )

        # Admission control (service/dataplane/admission.py).
        self.admissions = Counter(
            "catdog_admissions",
            "Admission decisions: admitted, or refused_limit / refused_deadline / refused_memory.",
            ["model", "result"],
            registry=r,
        )
        self.admission_limit = Gauge(
            "catdog_admission_limit",
            "Concurrency limit now (measured throughput x target latency).",
            ["model"],
            registry=r,
        )
        self.admission_throughput = Gauge(
            "catdog_admission_throughput",
            "Measured requests completed per second while the model had work.",
            ["model"],
            registry=r,
        )
        self.stage_depth = Gauge(
            "catdog_stage_depth",
            "Admitted work in each stage: reading, decoding, queued, inference.",
            ["model", "stage"],
            registry=r,
        )
        self.expired = Counter(
            "catdog_expired_work",
            "Work dropped because its deadline passed before the stage.",
            ["model", "stage"],
            registry=r,
        )
        self.body_bytes_in_flight = Gauge(
            "catdog_body_bytes_in_flight", "Request body bytes reserved by admitted requests.", registry=r
        )

        # Models that change while serving (service/models/).
        self.model_loads = Counter(
            "catdog_model_loads",
            "Version loads by outcome: loaded, failed_download, failed_verify, failed_session, failed_warmup.",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.model_unloads = Counter(
            "catdog_model_unloads", "Versions closed after their last request.", ["model", "version"], registry=r
        )
        self.model_load_seconds = Histogram(
            "catdog_model_load_duration_seconds",
            "Time a version's load spent in each phase: download, verify, session, warmup.",
            ["model", "phase"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.versions_ready = Gauge(
            "catdog_model_versions_ready", "Versions of the model serving now.", ["model"], registry=r
        )

    def for_model(self, model: str) -> ModelMetrics:
        return ModelMetrics(model, self)
