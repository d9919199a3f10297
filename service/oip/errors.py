"""The service's exception taxonomy (service/errors.py) in the Open Inference Protocol's terms: the body
`{"error": "<message>"}` with the error's own HTTP status over REST, and a gRPC status code over gRPC. Refusals
count in `catdog_rejected_requests_total` exactly as on catdog's own routes."""

from __future__ import annotations

import grpc

from service.errors import CatdogError
from service.observability import ServiceMetrics

GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,  # too many bytes, pixels, frames or images: resending will not help
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,  # not ready, overloaded, draining: clients retry UNAVAILABLE elsewhere
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def error_json(exc: CatdogError) -> dict[str, str]:
    return {"error": exc.message}


def http_status(exc: CatdogError) -> int:
    """The service's status, except that a BYTES element that is not an image is a bad tensor (400): the
    protocol has no media type for a client to get wrong (catdog's own routes answer 415)."""
    return 400 if exc.status == 415 else exc.status


def grpc_code(exc: CatdogError) -> grpc.StatusCode:
    return GRPC_CODES.get(exc.status, grpc.StatusCode.INTERNAL)


def count_rejection(metrics: ServiceMetrics, model: str | None, exc: CatdogError) -> None:
    if exc.reason:
        metrics.rejected.labels(model or "-", exc.reason).inc()
