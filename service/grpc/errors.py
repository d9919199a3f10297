"""The gRPC transport's one error path: the service's taxonomy (service/errors.py) as a gRPC status, with the
Retry-After of a 503 as trailing metadata, counted once (DataPlane.rejected) like the REST refusals."""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from service.dataplane.dataplane import DataPlane
from service.errors import CatdogError

# By the error class's status (each class has one): the taxonomy's classes need no gRPC knowledge of their own.
GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.INVALID_ARGUMENT,  # too many bytes, pixels, frames or images: resending will not help
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,  # a call of Triton's protocol that catdog does not serve
    503: grpc.StatusCode.UNAVAILABLE,  # not ready, overloaded, draining: clients retry UNAVAILABLE elsewhere
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_code(exc: CatdogError) -> grpc.StatusCode:
    return GRPC_CODES.get(exc.status, grpc.StatusCode.INTERNAL)


async def abort(
    context: grpc.aio.ServicerContext[Any, Any], data_plane: DataPlane, model: str | None, exc: CatdogError
) -> NoReturn:
    """End the call with `exc`'s status and message (and Retry-After when it has one)."""
    data_plane.rejected(model, exc)
    if exc.retry_after_s:
        context.set_trailing_metadata((("retry-after", str(exc.retry_after_s)),))
    await context.abort(grpc_code(exc), exc.message)
    raise AssertionError("unreachable: ServicerContext.abort raises")  # pragma: no cover
