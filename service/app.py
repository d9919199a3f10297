"""The app factory. Building the app does no I/O beyond logging set-up; the lifespan loads models in the
background so /livez answers at once and /readyz turns 200 when every model is loaded and warmed up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI, Request, Response
from prometheus_client.exposition import choose_encoder

from service.dataplane.dataplane import DataPlane
from service.dataplane.runtime import resolve_providers
from service.errors import StartupError
from service.grpc.server import GrpcServer
from service.observability import LATENCY_BUCKETS, ServiceMetrics, configure_logging
from service.rest.access import AccessMiddleware, PathScopes
from service.rest.admission import AdmissionMiddleware
from service.rest.errors import register_error_handlers
from service.rest.middleware import HttpMetrics, RequestContextMiddleware
from service.rest.observe import ObservationMiddleware
from service.rest.routes import health, models, predict, ui, v2
from service.rest.routes import repository as repository_api
from service.rest.routes.docs import mount_docs
from service.security.authorizer import AccessMetrics, Authorizer
from service.security.keys import KeysFileError
from service.settings import Settings
from service.version import package_version

log = structlog.get_logger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    data_plane = DataPlane.from_settings(settings)
    observer = data_plane.observer  # tracing / payload logging; None when both are off
    repository, metrics = data_plane.repository, data_plane.metrics
    authorizer = _authorizer(settings, metrics)  # one access check, handed to both transports
    grpc_server = GrpcServer(data_plane, authorizer) if settings.grpc_enabled else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolve_providers(settings.providers)  # a CUDA request without CUDA stops start-up here
        repository.discover()
        log.info(
            "starting",
            model_dir=repository.source.description,
            model_control=settings.model_control,
            models=list(repository.models),
            providers=settings.providers,
            pipeline="direct" if data_plane.classifier.direct else "split",
            version=package_version(),
        )
        if observer is not None:
            observer.start_sending()
        if grpc_server is not None:
            await grpc_server.start()  # same process and event loop: it shares the data plane
        loader = asyncio.create_task(_load_models(data_plane), name="load-models")
        keys_watch = asyncio.create_task(authorizer.watch(), name="api-keys-watch")
        try:
            yield
        finally:
            keys_watch.cancel()
            data_plane.lifecycle.begin_drain()
            if grpc_server is not None:
                await grpc_server.stop()  # running calls finish within the drain budget
            loader.cancel()
            for task in (loader, keys_watch):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await data_plane.close()
            if observer is not None:
                observer.close()  # spans and payload events still queued leave now (bounded waits)
            log.info("stopped")

    docs = settings.docs_enabled
    app = FastAPI(
        title="catdog",
        version=package_version(),
        summary="Cats-vs-dogs image classification with ONNX Runtime",
        lifespan=lifespan,
        root_path=settings.root_path,
        docs_url=None,  # served by routes/docs.py from local assets
        redoc_url=None,
        openapi_url="/openapi.json" if docs else None,
    )
    # Every adapter is built from the one data plane; nothing is fetched from app.state.
    register_error_handlers(app, data_plane)
    for router in (predict.router, models.router, health.router, ui.router, v2.router, repository_api.router):
        app.include_router(router(data_plane))
    if docs:
        mount_docs(app, settings.docs_path, "/openapi.json")
    http_metrics = _instrument(app, settings, metrics) if settings.metrics_enabled else None
    # In front of routing: a refusal costs no routing or dependencies.
    app.add_middleware(AdmissionMiddleware, data_plane=data_plane)
    # In front of admission: a call without a valid key takes no permit and its body is never read.
    docs_path = settings.docs_path if settings.docs_enabled else None
    app.add_middleware(AccessMiddleware, authorizer=authorizer, scopes=PathScopes(settings.metrics_path, docs_path))
    if observer is not None:  # outside the door (its refusals are traced), inside the request id and access line
        app.add_middleware(ObservationMiddleware, observer=observer, excluded=_unobserved(settings))
    app.add_middleware(
        RequestContextMiddleware, settings=settings, lifecycle=data_plane.lifecycle, http_metrics=http_metrics
    )
    return app


def _instrument(app: FastAPI, settings: Settings, metrics: ServiceMetrics) -> HttpMetrics:
    """HTTP metrics by route template (unknown paths grouped), probes and /metrics itself excluded; observed by
    RequestContextMiddleware (the series prometheus-fastapi-instrumentator exported, without its middleware)."""

    def metrics_page(request: Request) -> Response:
        """OpenMetrics (with the latency histograms' exemplars) when the scraper asks for it, as Prometheus does;
        the classic text format otherwise."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(metrics.registry), headers={"content-type": content_type})

    app.add_api_route(settings.metrics_path, metrics_page, methods=["GET"], include_in_schema=False)
    return HttpMetrics(metrics.registry, LATENCY_BUCKETS, _unobserved(settings))


def _unobserved(settings: Settings) -> list[str]:
    """Probes and the metrics page: neither counted in the HTTP metrics nor traced."""
    return [settings.metrics_path, "/livez", "/readyz", "/v2/health/live", "/v2/health/ready"]


def _authorizer(settings: Settings, metrics: ServiceMetrics) -> Authorizer:
    """The keys file is read here so that a bad one stops start-up: never serve open, or locked, by accident."""
    try:
        authorizer = Authorizer.from_file(
            settings.api_keys_file, settings.api_keys_reload_s, AccessMetrics(metrics.registry)
        )
    except KeysFileError as exc:
        log.critical("api_keys_file_invalid", error=str(exc))
        raise StartupError(f"CATDOG_API_KEYS_FILE: {exc}") from None
    log.info("access_control", keys_file=str(settings.api_keys_file or ""), keys_required=authorizer.keys_required)
    return authorizer


async def _load_models(data_plane: DataPlane) -> None:
    try:
        await data_plane.load()
    except StartupError as exc:
        # The session refused the provider the operator asked for: serving on anything else would lie.
        log.critical("startup_failed", error=str(exc))
        logging.shutdown()
        os._exit(3)
