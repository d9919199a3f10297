"""The service's exception taxonomy. Each error knows its HTTP status, its stable code, and the reason label it
counts under in `catdog_rejected_requests_total`; the HTTP layer turns it into the one JSON error body."""

from __future__ import annotations

from typing import ClassVar


def error_body(code: str, message: str, request_id: str) -> dict[str, dict[str, str]]:
    """The one JSON error shape every refusal and fault leaves the service in (docs/api.md)."""
    return {"error": {"code": code, "message": message, "request_id": request_id}}


class CatdogError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    reason: ClassVar[str | None] = None  # counted as a rejection when set
    retry_after_s: int | None = None  # the class default; an instance may say better (admission's drain time)

    def __init__(self, message: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after_s is not None:
            self.retry_after_s = retry_after_s


class EmptyInput(CatdogError):
    status, code, reason = 400, "empty_input", "empty"


class InvalidImage(CatdogError):
    status, code, reason = 400, "invalid_image", "undecodable"


class MalformedRequest(CatdogError):
    status, code, reason = 400, "malformed_request", "malformed"


class ModelNotFound(CatdogError):
    status, code, reason = 404, "model_not_found", "unknown_model"


class PayloadTooLarge(CatdogError):
    status, code, reason = 413, "payload_too_large", "too_large"


class TooManyPixels(CatdogError):
    status, code, reason = 413, "too_many_pixels", "too_many_pixels"


class TooManyFrames(CatdogError):
    status, code, reason = 413, "too_many_frames", "too_many_frames"


class TooManyFiles(CatdogError):
    status, code, reason = 413, "too_many_files", "too_many_files"


class UnsupportedMediaType(CatdogError):
    status, code, reason = 415, "unsupported_media_type", "unsupported_type"


class MissingFile(CatdogError):
    status, code, reason = 422, "missing_file", "missing_file"


class NotServed(CatdogError):
    """A call of a protocol that catdog knows but does not serve (Triton's shared memory, repository control...)."""

    status, code = 501, "not_implemented"


class InferenceFailed(CatdogError):
    status, code, reason = 500, "inference_failed", "inference_error"


class NotReady(CatdogError):
    status, code, reason, retry_after_s = 503, "not_ready", "not_ready", 5


class Overloaded(CatdogError):
    status, code, reason, retry_after_s = 503, "overloaded", "overloaded", 1


class Draining(CatdogError):
    status, code, reason, retry_after_s = 503, "draining", "draining", 5


class DeadlineExceeded(CatdogError):
    status, code, reason = 504, "timeout", "timeout"


class StartupError(Exception):
    """A fault that must stop the process at start-up (e.g. CUDA asked for but absent): never served around."""


class ModelControlRefused(CatdogError):
    """A repository load / unload outside explicit model control mode (Triton answers 400 too)."""

    status, code = 400, "model_control_mode"


class ModelLoadFailed(CatdogError):
    """An explicit load that left no version of the model ready; the message says why."""

    status, code = 400, "model_load_failed"
