"""HttpMetrics (observed by RequestContextMiddleware) exports the series prometheus-fastapi-instrumentator did,
with the same labels: the route template as `handler`, "none" for paths no route matches, excluded handlers
not counted, the real status code."""

from __future__ import annotations

from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest

from service.observability import LATENCY_BUCKETS
from service.rest.middleware import HttpMetrics, RequestContextMiddleware


def _app() -> tuple[FastAPI, CollectorRegistry]:
    app = FastAPI()
    registry = CollectorRegistry()

    @app.get("/items/{item}")
    async def item(item: str) -> dict[str, str]:
        if item == "missing":
            raise HTTPException(404, "no such item")
        return {"item": item}

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        return {}

    @app.post("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    metrics = HttpMetrics(registry, LATENCY_BUCKETS, excluded=["/metrics", "/livez"])
    app.add_middleware(RequestContextMiddleware, http_metrics=metrics)
    return app, registry


def test_series_and_labels_match_the_instrumentator() -> None:
    app, registry = _app()
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/items/a").status_code == 200
        assert client.get("/items/b").status_code == 200
        assert client.get("/items/missing").status_code == 404
        assert client.get("/nowhere/at/all").status_code == 404
        assert client.post("/items/a").status_code == 405
        assert client.get("/livez").status_code == 200
        assert client.post("/boom").status_code == 500
    text = generate_latest(registry).decode()
    assert 'http_requests_total{handler="/items/{item}",method="GET",status="200"} 2.0' in text
    assert 'http_requests_total{handler="/items/{item}",method="GET",status="404"} 1.0' in text
    assert 'http_requests_total{handler="none",method="GET",status="404"} 1.0' in text
    assert 'http_requests_total{handler="/items/{item}",method="POST",status="405"} 1.0' in text
    assert 'http_requests_total{handler="/boom",method="POST",status="500"} 1.0' in text
    assert "/livez" not in text
    assert 'http_request_duration_seconds_bucket{handler="/items/{item}",le="0.001",method="GET"}' in text
    assert 'http_request_duration_seconds_count{handler="/items/{item}",method="GET"} 3.0' in text
    assert "# HELP http_requests_total Total number of requests by method, status and handler." in text
    assert "# HELP http_request_duration_seconds Duration of HTTP requests in seconds" in text
