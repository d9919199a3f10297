"""The model repository extension over REST (Triton's): POST /v2/repository/index, POST
/v2/repository/models/{name}/load, POST /v2/repository/models/{name}/unload. The calls live in
service/models/admin.py; access control's door requires the `admin` scope for them (service/rest/access.py); a
raised CatdogError leaves by service/rest/errors.py in the protocol's shape, `{"error": "..."}`."""

from __future__ import annotations

import json
from dataclasses import asdict

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from service.dataplane.dataplane import DataPlane
from service.errors import MalformedRequest
from service.models.admin import RepositoryApi
from service.rest.requests import note
from service.rest.uploads import read_body

MAX_BODY = 64 * 1024


async def _document(request: Request) -> dict[str, object]:
    body = await read_body(request, MAX_BODY)
    if not body.strip():
        return {}
    try:
        document = json.loads(body)
    except ValueError:
        raise MalformedRequest("the request is not valid JSON") from None
    if not isinstance(document, dict):
        raise MalformedRequest("the request must be a JSON object")
    return document


def router(data_plane: DataPlane) -> APIRouter:
    api = RepositoryApi(data_plane.repository)
    routes = APIRouter(prefix="/v2/repository", tags=["model repository"], include_in_schema=False)

    @routes.post("/index")
    async def index(request: Request) -> Response:
        ready = (await _document(request)).get("ready", False)
        if not isinstance(ready, bool):
            raise MalformedRequest("'ready' must be true or false")
        return JSONResponse([asdict(item) for item in api.index(ready_only=ready)])

    @routes.post("/models/{name}/load")
    async def load(request: Request, name: str) -> Response:
        note(request, model=name)
        if (await _document(request)).get("parameters"):
            # Triton's config overrides and uploaded files: a repository is data, and it is never taken from here.
            raise MalformedRequest("load parameters (config overrides, files) are not accepted; change the repository")
        await api.load(name)
        return JSONResponse({})

    @routes.post("/models/{name}/unload")
    async def unload(request: Request, name: str) -> Response:
        note(request, model=name)
        await _document(request)
        await api.unload(name)
        return JSONResponse({})

    return routes
