"""The gRPC door of access control (service/security/authorizer.py): a server interceptor that decides from
the method name and the call's metadata alone, before the request message is read.

Scopes by method: open: `grpc.health.v1.Health/*` and the protocol's `ServerLive` / `ServerReady` (the kubelet
and load balancers have no key); `admin`: what changes the server (`Repository*`, shared-memory register and
unregister, `TraceSetting`, `LogSettings`); `infer`: every other method (server reflection and anything unknown
too: never open by accident). The key travels as `authorization:
Bearer <key>` metadata (what tritonclient's and KServe's `headers=` send) or `x-api-key: <key>`.

A refusal is UNAUTHENTICATED (no key, unknown key) or PERMISSION_DENIED (the key lacks the scope). It is answered
by a streaming-request handler that never reads the request (a unary call is a stream of one message on the wire),
counted in `catdog_access_refused_total{transport="grpc"}`, and written as an access line like any call. An
allowed call carries the key's name to the servicer's access line through `current_key`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, TypeAlias

import grpc

from service.access import log_access, request_id
from service.security.authorizer import Authorizer, Decision, Outcome, credential_from
from service.security.keys import Scope

TRANSPORT = "grpc"
INFERENCE = "/inference.GRPCInferenceService/"
OPEN_METHODS = frozenset({INFERENCE + "ServerLive", INFERENCE + "ServerReady"})
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the type stubs
current_key: ContextVar[str | None] = ContextVar("catdog_api_key_name", default=None)


# Calls that change the server: the repository API, shared-memory registration, trace and log settings.
ADMIN_METHODS = frozenset(
    INFERENCE + name
    for name in (
        "RepositoryIndex",
        "RepositoryModelLoad",
        "RepositoryModelUnload",
        "SystemSharedMemoryRegister",
        "SystemSharedMemoryUnregister",
        "CudaSharedMemoryRegister",
        "CudaSharedMemoryUnregister",
        "TraceSetting",
        "LogSettings",
    )
)


def method_scope(method: str) -> Scope | None:
    if method in OPEN_METHODS or method.startswith("/grpc.health.v1.Health/"):
        return None
    if method in ADMIN_METHODS or method.startswith(INFERENCE + "Repository"):
        return Scope.ADMIN
    return Scope.INFER


class AccessInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method = handler_call_details.method
        needed = method_scope(method)
        if needed is None:
            return await continuation(handler_call_details)
        authorization = api_key = None
        for name, value in handler_call_details.invocation_metadata or ():
            if name == "authorization" and isinstance(value, str):
                authorization = value
            elif name == "x-api-key" and isinstance(value, str):
                api_key = value
        decision = self.authorizer.check(credential_from(authorization, api_key), needed)
        if decision.allowed:
            current_key.set(decision.key_name)  # same task as the handler: its access line reads it
            return await continuation(handler_call_details)
        self.authorizer.count(TRANSPORT, decision)
        handler = await continuation(handler_call_details)
        return _refusal(method, decision, streaming_response=bool(handler and handler.response_streaming))


def _refusal(method: str, decision: Decision, *, streaming_response: bool) -> Handler:
    unauthenticated = decision.outcome is Outcome.UNAUTHENTICATED
    code = grpc.StatusCode.UNAUTHENTICATED if unauthenticated else grpc.StatusCode.PERMISSION_DENIED

    async def refuse(requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        started = time.perf_counter()
        metadata = dict(context.invocation_metadata() or ())
        fields: dict[str, Any] = {"error": "unauthenticated" if unauthenticated else "forbidden"}
        if decision.key_name:
            fields["key"] = decision.key_name
        rid = request_id(metadata.get("x-request-id"))
        log_access(rid, "GRPC", method, code.name, time.perf_counter() - started, context.peer() or "", fields)
        await context.abort(code, decision.message)

    if streaming_response:
        return grpc.stream_stream_rpc_method_handler(refuse)
    return grpc.stream_unary_rpc_method_handler(refuse)
