"""Swagger UI served from the assets the fastapi-offline package ships (MIT; Swagger UI 5, which renders the
OpenAPI 3.1 FastAPI emits) rather than FastAPI's default CDN, so /docs works offline, in air-gapped clusters and
under a same-origin Content-Security-Policy."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles


def mount_docs(app: FastAPI, docs_path: str, openapi_url: str) -> None:
    """Swagger UI at `docs_path`, its assets under `<docs_path>/assets/`, its OAuth2 redirect page beside it."""
    base = docs_path.rstrip("/")
    assets_dir = resources.files("fastapi_offline") / "static"
    app.mount(f"{base}/assets", StaticFiles(directory=str(assets_dir)), name="swagger-ui-assets")

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")  # behind an ingress prefix
        assets = f"{root}{base}/assets"
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon.png",
            oauth2_redirect_url=f"{root}{base}/oauth2-redirect",
        )

    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    app.add_api_route(docs_path, swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(f"{base}/oauth2-redirect", oauth2_redirect, methods=["GET"], include_in_schema=False)
