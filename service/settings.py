"""The one settings object. Every knob is an environment variable with the prefix CATDOG_."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024
GiB = 1024 * MiB
REMOTE_SCHEMES = ("s3://", "https://", "http://")


class Settings(BaseSettings):
    """Defaults suit a laptop and a small pod; docs/operations.md explains each one."""

    model_config = SettingsConfigDict(env_prefix="CATDOG_", extra="ignore", frozen=True)

    # Where and how to listen.
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="uvicorn worker processes; prefer replicas (metrics are per process)")
    root_path: str = Field("", description="path prefix when served behind an ingress, e.g. /catdog")
    forwarded_allow_ips: str = Field("127.0.0.1", description="proxies trusted for X-Forwarded-*; '*' in a cluster")
    grpc_enabled: bool = Field(True, description="serve the Open Inference Protocol over gRPC as well")
    grpc_port: int = Field(8001, ge=1, le=65535, description="gRPC port (inference.GRPCInferenceService, health)")
    grpc_reflection: bool = Field(
        True, description="gRPC server reflection (grpcurl, grpcui, Postman list and describe the services)"
    )

    # Models and ONNX Runtime.
    model_dir: Path = Path("models")
    providers: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto: CUDA when onnxruntime-gpu sees a GPU; cuda: fail at start-up without one"
    )
    intra_op_threads: int = Field(
        0, ge=0, description="threads per inference; 0: the cores this process may use (affinity, cgroup CPU limit)"
    )
    inter_op_threads: int = Field(1, ge=1)
    precision: Literal["auto", "fp32", "int8"] = Field(
        "auto",
        description="which ONNX file of each model: auto = the card's default_precision; int8 where the card has "
        "an INT8 variant (FP32 otherwise, logged)",
    )
    warmup_runs: int = Field(1, ge=1, description="inferences on a blank image before a model counts as ready")
    require_all_models: bool = Field(False, description="ready only if every model loaded (else: at least one)")

    # Micro-batching and back-pressure.
    batch_max_size: int = Field(1, ge=1, description="images per ONNX Runtime run")
    batch_max_wait_ms: float = Field(0.0, ge=0, description="how long a batch waits to fill")
    queue_max: int = Field(64, ge=1, description="images waiting per model before new ones get 503")
    pipeline: Literal["auto", "split", "direct"] = Field(
        "auto",
        description="split: decode in the decode pool, then infer on the model's thread (decode of one request "
        "overlaps inference of another); direct: one request's decode and inference in one job on the model's "
        "thread (no hand-off between threads; needs batch_max_size 1, else split runs); auto: direct on one usable "
        "CPU, else split",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="per-request deadline, and the cap on a client's X-Request-Timeout; past it: 504"
    )

    # Admission control (service/dataplane/admission.py; docs/operations.md "Admission control").
    admission_target_latency_s: float = Field(
        1.0, gt=0, description="latency goal for admitted requests: limit = measured throughput x this"
    )
    admission_min_limit: int = Field(8, ge=1, description="per-model concurrency floor (and the limit at start)")
    admission_max_limit: int = Field(64, ge=1, description="per-model concurrency cap, whatever is measured")
    admission_max_body_bytes: int = Field(
        128 * MiB, ge=1, description="request bodies admitted requests may hold in memory, all models together"
    )
    drain_timeout_s: float = Field(
        20.0, ge=0, description="on SIGTERM, the most seconds until exit (drain delay + accepted requests finishing)"
    )
    drain_delay_s: float = Field(
        0.0,
        ge=0,
        description="on SIGTERM, keep listening this long (readiness 503, new predictions 503) before closing the "
        "socket; 0 with the chart's preStop sleep, a few seconds without one",
    )

    # Input limits.
    max_upload_bytes: int = Field(10 * MiB, ge=1, description="request body size limit")
    max_image_pixels: int = Field(40_000_000, ge=1, description="width x height limit, checked before decoding")
    max_frames: int = Field(
        1000, ge=1, description="frames an animated GIF/PNG/WebP/TIFF may declare (only the first is decoded)"
    )
    max_files_per_request: int = Field(16, ge=1)
    decode_workers: int = Field(
        0, ge=0, description="threads decoding images; 0: the usable CPUs. Each may hold one max_image_pixels image"
    )
    max_header_bytes: int = Field(
        65536, ge=1024, description="request line + headers; past it: 431 and the connection closes"
    )

    # Observability and surface.
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    docs_enabled: bool = True
    docs_path: str = Field("/docs", pattern=r"^/[A-Za-z0-9._~/-]*$", description="Swagger UI; /openapi.json stays")
    metrics_enabled: bool = True
    metrics_path: str = "/metrics"
    grafana_url: str | None = Field(None, description="linked from the web page when set")
    git_revision: str | None = Field(None, description="shown by /version; the image sets it at build time")

    # Tracing (service/tracing/; the exporter, resource and sampler come from the standard OTEL_ variables).
    tracing: bool = Field(
        False,
        description="export OpenTelemetry spans over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, "
        "OTEL_TRACES_SAMPLER...); off: the SDK is not even imported",
    )

    # Payload logging (service/payloadlog/): CloudEvents in KServe's logger shape, sent off the request path.
    payload_log_url: str | None = Field(
        None, pattern=r"^(|https?://.+)$", description="where to POST each inference's events; unset or empty: off"
    )
    payload_log_mode: Literal["all", "request", "response"] = "all"
    payload_log_sample_rate: float = Field(1.0, ge=0, le=1, description="share of requests logged")
    payload_log_max_bytes: int = Field(
        64 * 1024, ge=0, description="image bytes one event carries; past it an image is its sha256, size and shape"
    )
    payload_log_queue: int = Field(1000, ge=1, description="requests waiting to be sent; past it new ones are dropped")
    payload_log_queue_bytes: int = Field(
        64 * MiB, ge=1, description="image and tensor bytes the waiting requests may hold; past it, dropped"
    )
    payload_log_timeout_s: float = Field(2.0, gt=0, description="one POST to the sink")
    payload_log_retries: int = Field(2, ge=0, description="retries of a failed POST (connection error, 5xx, 429)")
    payload_log_source: str | None = Field(None, description="the events' ce-source; default urn:catdog:<hostname>")
    # Access control and TLS (service/security/; docs/operations.md "Access control and TLS").
    api_keys_file: Path | None = Field(
        None,
        description='API key digests and scopes, {"keys": [{"name", "sha256", "scopes"}]}; unset: inference and '
        "metrics open, the management API refused; set: every call but the probes needs a key of its scope",
    )
    api_keys_reload_s: float = Field(2.0, gt=0, description="how often the keys file is checked for a change")
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain: TLS on the HTTP and gRPC ports")
    tls_key_file: Path | None = Field(None, description="PEM private key of tls_cert_file")
    tls_client_ca_file: Path | None = Field(None, description="PEM CA bundle: mutual TLS, clients need a certificate")
    tls_reload_s: float = Field(2.0, gt=0, description="how often the TLS files are checked for a change")

    @model_validator(mode="after")
    def _tls_files_together(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("CATDOG_TLS_CERT_FILE and CATDOG_TLS_KEY_FILE go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("CATDOG_TLS_CLIENT_CA_FILE needs CATDOG_TLS_CERT_FILE and CATDOG_TLS_KEY_FILE")
        return self

    # Models that change while serving (service/models/; docs/operations.md "Model versions and sources").
    model_url: str | None = Field(
        None,
        description="a remote repository: s3://bucket/prefix or https://.../models.tar.gz (.zip); set by "
        "CATDOG_MODEL_DIR when it holds such a URL",
    )
    model_control: Literal["none", "poll", "explicit"] = Field(
        "none",
        description="none: read the repository once at start; poll: re-read it every model_poll_s; explicit: only "
        "the repository API loads and unloads (model_load names what loads at start)",
    )
    model_poll_s: float = Field(10.0, gt=0, description="seconds between repository reads in poll mode")
    model_load: str = Field("", description="explicit mode: comma-separated models to load at start ('*': all)")
    model_cache_dir: Path | None = Field(
        None, description="where remote repositories are cached (default: <tmp>/catdog-model-cache)"
    )
    model_max_bytes: int = Field(
        4 * GiB, ge=1, description="one model version's files (and an archive of the repository), refused above"
    )
    model_download_timeout_s: float = Field(300.0, gt=0, description="connect / read timeout for remote sources")

    @model_validator(mode="before")
    @classmethod
    def _remote_model_dir(cls, data: object) -> object:
        """CATDOG_MODEL_DIR=s3://... keeps its URL (a Path would fold `s3://` into `s3:/`)."""
        if isinstance(data, dict):
            raw = data.get("model_dir")
            if isinstance(raw, str) and raw.startswith(REMOTE_SCHEMES) and not data.get("model_url"):
                return {**data, "model_url": raw}
        return data

    @property
    def model_location(self) -> str:
        """The repository as a source understands it: the remote URL, or the local folder."""
        return self.model_url or str(self.model_dir)
