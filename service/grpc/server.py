"""The gRPC server: a grpc.aio server started and stopped by the app's lifespan (service/app.py), so it runs in
uvicorn's process and event loop and shares its data plane (repository, decode pool, batchers, metrics,
lifecycle). It serves `inference.GRPCInferenceService` and `grpc.health.v1.Health`.

Health follows readiness exactly as /readyz does: SERVING once the models are ready, NOT_SERVING while loading,
with no usable model, and from the moment a drain begins (the service "" and "inference.GRPCInferenceService"
alike); the service "liveness" is SERVING whenever the process answers, like /livez. So Kubernetes' native gRPC
probes can replace the HTTP ones.

Access control and TLS (service/security/): every call passes AccessInterceptor (service/grpc/access.py); with
CATDOG_TLS_CERT_FILE the port serves TLS (mutual with CATDOG_TLS_CLIENT_CA_FILE), the certificate re-read when
its files change.

Drain: SIGTERM turns the lifecycle to DRAINING (service/server.py): new ModelInfer calls answer UNAVAILABLE at
once while calls already running go on; at the lifespan's shutdown the server stops with what is left of
`drain_timeout_s` as its grace period.

With CATDOG_WORKERS > 1 each worker process binds the same port with SO_REUSEPORT (the kernel spreads
connections across them); with one worker the port is bound exclusively, so a second server on it fails to start
instead of silently sharing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from service.dataplane.dataplane import DataPlane
from service.errors import StartupError
from service.grpc.access import AccessInterceptor
from service.grpc.pool import POOL
from service.grpc.servicer import add_to_server
from service.security.authorizer import Authorizer
from service.security.tls import grpc_server_credentials, tls_files

log = structlog.get_logger(__name__)

SERVICE_NAME = "inference.GRPCInferenceService"
LIVENESS = "liveness"  # SERVING while the process answers: for a liveness probe, which must not fail on drain
HEALTH_POLL_S = 0.25
_MESSAGE_OVERHEAD = 64 * 1024  # the request's own fields beside the tensor bytes


class ReadinessHealth(health_aio.HealthServicer):
    """grpc.health.v1 answered from the service's readiness on every Check (never stale); Watch streams are fed
    by a poller."""

    def __init__(self, data_plane: DataPlane) -> None:
        super().__init__()
        self.data_plane = data_plane

    def status(self) -> Any:
        serving = self.data_plane.ready()
        return health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING

    async def Check(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if request.service == LIVENESS:
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        if request.service not in ("", SERVICE_NAME):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=self.status())

    async def Watch(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """A stream starts from readiness as it is now, as Check does, not from the poller's last look (which may
        be up to a poll behind, more on a busy core); the poller then feeds the changes."""
        if request.service in ("", SERVICE_NAME):
            await self.set(request.service, self.status())
        await super().Watch(request, context)

    async def poll(self) -> None:
        last = None
        while True:
            status = self.status()
            if status != last:
                for service in ("", SERVICE_NAME):
                    await self.set(service, status)
                last = status
            await asyncio.sleep(HEALTH_POLL_S)


def enable_reflection(server: grpc.aio.Server) -> None:
    """Server reflection over both services: catdog's messages from their private pool (service/grpc/pool.py),
    grpc.health.v1's from protobuf's default one, where grpcio-health-checking registers them."""
    from google.protobuf import descriptor_pool

    services = (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
    pool: Any = _ReflectionPool(POOL, descriptor_pool.Default())  # duck-typed: the lookups reflection makes
    reflection.enable_server_reflection(services, server, pool=pool)


class _ReflectionPool:
    """The lookups grpc_reflection makes, tried in each pool in turn (a symbol lives in exactly one of them)."""

    def __init__(self, *pools: Any) -> None:
        self._pools = pools

    def __getattr__(self, lookup: str) -> Any:
        def find(*args: Any) -> Any:
            for pool in self._pools[:-1]:
                try:
                    return getattr(pool, lookup)(*args)
                except KeyError:
                    continue
            return getattr(self._pools[-1], lookup)(*args)

        return find


class GrpcServer:
    def __init__(self, data_plane: DataPlane, authorizer: Authorizer | None = None) -> None:
        self.data_plane = data_plane
        self.settings = data_plane.settings
        self.lifecycle = data_plane.lifecycle
        self.authorizer = authorizer
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and start; a port that cannot be bound stops start-up (StartupError)."""
        settings = self.settings
        server = grpc.aio.server(
            interceptors=[AccessInterceptor(self.authorizer)] if self.authorizer is not None else None,
            options=[
                ("grpc.max_receive_message_length", settings.max_upload_bytes + _MESSAGE_OVERHEAD),
                ("grpc.max_send_message_length", 16 * 1024 * 1024),
                ("grpc.so_reuseport", 1 if settings.workers > 1 else 0),
            ],
        )
        add_to_server(self.data_plane, server)
        health = ReadinessHealth(self.data_plane)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        if settings.grpc_reflection:
            enable_reflection(server)
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        address = f"{host}:{settings.grpc_port}"
        tls = tls_files(settings.tls_cert_file, settings.tls_key_file, settings.tls_client_ca_file)
        try:
            if tls is None:
                port = server.add_insecure_port(address)
            else:
                port = server.add_secure_port(address, grpc_server_credentials(tls, settings.tls_reload_s))
        except (RuntimeError, OSError, ssl.SSLError) as exc:
            raise StartupError(f"cannot listen for gRPC on {address}: {exc}") from None
        if not port:
            raise StartupError(f"cannot listen for gRPC on {address}")
        await server.start()
        self._server, self.port = server, port
        self._poller = asyncio.create_task(health.poll(), name="grpc-health")
        log.info(
            "grpc_listening", address=f"{host}:{port}", tls=tls is not None, mutual_tls=bool(tls and tls.client_ca)
        )

    async def stop(self) -> None:
        """Stop accepting calls; running calls get what is left of the drain budget."""
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._server is None:
            return
        started = self.lifecycle.drain_started
        elapsed = time.monotonic() - started if started is not None else 0.0
        grace = max(0.0, self.settings.drain_timeout_s - elapsed - min(1.0, self.settings.drain_timeout_s / 10))
        await self._server.stop(grace)
        self._server = None
