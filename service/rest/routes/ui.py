"""The web page: `GET /` (server-rendered HTML) and its three static assets.

The page is one HTML document, one stylesheet and one script, all served from this router, so it works offline
and needs nothing from a CDN. It is built to run under a strict Content-Security-Policy (no inline script or
style, no eval). Every URL in it is relative; behind an ingress prefix (`root_path`) a `<base href>` makes the
relative URLs resolve under that prefix even when the page itself is opened without a trailing slash.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from service.dataplane.dataplane import DataPlane

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)
"""The policy the page is written for; sent with the HTML so the page is safe even on its own."""

_MEDIA_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"


@dataclass(frozen=True)
class Asset:
    """A static file held in memory, with a content hash used as ETag and cache-busting version."""

    body: bytes
    media_type: str
    version: str

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


@cache
def asset(name: str) -> Asset | None:
    """The packaged file `service/static/<name>`, or None when `name` is not one of the page's assets."""
    media_type = _MEDIA_TYPES.get(name)
    if media_type is None:
        return None
    body = resources.files("service").joinpath("static", name).read_bytes()
    return Asset(body, media_type, hashlib.sha256(body).hexdigest()[:16])


@cache
def _template() -> Template:
    return Template(resources.files("service").joinpath("templates", "index.html").read_text("utf-8"))


def _safe_http_url(url: str | None) -> str | None:
    """`url` when it is an absolute http(s) URL (never `javascript:` and the like), else None."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


def _relative(path: str | None) -> str | None:
    """An app path like `/docs` as a URL relative to the page (the page sits at the app's root)."""
    if not path:
        return None
    return path.lstrip("/") or "."


def render_index(*, root_path: str, docs_url: str | None, grafana_url: str | None, max_upload_bytes: int) -> str:
    """The page's HTML. Every interpolated value is escaped here; the template holds no other data."""
    base = root_path.rstrip("/")
    base_tag = f'<base href="{html.escape(base + "/")}">' if base else ""
    links = []
    docs = _relative(docs_url)
    if docs is not None:
        links.append(f'<li><a href="{html.escape(docs)}">API docs</a></li>')
    grafana = _safe_http_url(grafana_url)
    if grafana is not None:
        links.append(f'<li><a href="{html.escape(grafana)}" rel="noopener noreferrer">Grafana dashboard</a></li>')
    mib = max_upload_bytes / (1024 * 1024)
    limit = f"{mib:.0f} MiB" if mib >= 1 else f"{max_upload_bytes // 1024} KiB"

    def url(name: str) -> str:
        found = asset(name)
        if found is None:  # one of the page's own three: only a broken install lacks it
            raise FileNotFoundError(f"service/static/{name} is not one of the page's assets")
        return html.escape(f"static/{name}?v={found.version}")

    return _template().substitute(
        base_tag=base_tag,
        css_url=url("app.css"),
        js_url=url("app.js"),
        icon_url=url("favicon.svg"),
        links="\n        ".join(links),
        max_upload_bytes=html.escape(str(int(max_upload_bytes))),
        upload_limit=html.escape(limit),
    )


def router(data_plane: DataPlane) -> APIRouter:
    """`GET /` and `GET /static/{name}`, rendered from `data_plane`'s settings."""
    settings = data_plane.settings
    routes = APIRouter(include_in_schema=False)

    @routes.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        """The page. Not cached by browsers beyond revalidation, so a new release shows at once."""
        body = render_index(
            root_path=str(request.scope.get("root_path") or settings.root_path or ""),
            docs_url=settings.docs_path if settings.docs_enabled else None,
            grafana_url=settings.grafana_url,
            max_upload_bytes=settings.max_upload_bytes,
        )
        return HTMLResponse(
            body,
            headers={
                "Cache-Control": _REVALIDATE,
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer",
            },
        )

    routes.add_api_route("/static/{name}", static, methods=["GET"])
    return routes


def static(name: str, request: Request) -> Response:
    """One of the page's assets. With the current `?v=` it is cached for a year; otherwise revalidated."""
    found = asset(name)
    if found is None:
        raise HTTPException(status_code=404, detail="Not Found")
    cache_control = _IMMUTABLE if request.query_params.get("v") == found.version else _REVALIDATE
    headers = {"ETag": found.etag, "Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
    if found.etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
        return Response(status_code=304, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)
