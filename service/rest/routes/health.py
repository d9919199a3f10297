"""Probes and /version. Liveness is constant-time; readiness reflects models and draining."""

from __future__ import annotations

import platform

import onnxruntime
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.dataplane.dataplane import DataPlane
from service.rest.schemas import ReadyResponse, VersionResponse
from service.version import git_revision, package_version


def router(data_plane: DataPlane) -> APIRouter:
    """/livez, /readyz and /version over `data_plane`."""
    routes = APIRouter(tags=["health"])
    repository = data_plane.repository

    @routes.get("/livez", summary="The process is alive (cheap; never touches models)")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @routes.get(
        "/readyz",
        response_model=ReadyResponse,
        responses={503: {"model": ReadyResponse, "description": "loading, no usable model, or draining"}},
        summary="Every model loaded and warmed up, and not draining",
    )
    async def readyz() -> JSONResponse:
        ready = data_plane.ready()
        if data_plane.lifecycle.draining:
            status = "draining"
        elif repository.loading:
            status = "loading"
        elif not repository.models:
            status = "no models"
        else:
            status = "ready" if ready else "no usable model"
        body = ReadyResponse(
            ready=ready,
            status=status,
            models={m.name: m.status for m in repository.models.values()},
            failed=repository.failures(),
        )
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    @routes.get("/version", response_model=VersionResponse, summary="Service, runtime and model versions")
    async def version() -> VersionResponse:
        models = repository.models.values()
        return VersionResponse(
            version=package_version(),
            git_revision=git_revision(data_plane.settings.git_revision),
            onnxruntime=onnxruntime.__version__,
            python=platform.python_version(),
            models={m.name: m.card.version if m.card else None for m in models},
            providers={m.name: m.provider for m in models},
        )

    return routes
