"""The REST adapters' request helpers: the client's timeout header, the body size admission reserves, the path."""

from __future__ import annotations

import pytest

from service.errors import MalformedRequest
from service.rest.requests import declared_body_bytes, header, parse_timeout, route_path


def test_client_timeouts_are_validated() -> None:
    assert parse_timeout(None) is None
    assert parse_timeout("1.5") == 1.5
    for bad in ("0", "-1", "soon", "nan", "inf", ""):
        with pytest.raises(MalformedRequest):
            parse_timeout(bad)


def test_declared_body_bytes_is_capped_by_the_upload_limit() -> None:
    assert declared_body_bytes(b"100", 1000) == 100
    assert declared_body_bytes("5000", 1000) == 1000
    assert declared_body_bytes(None, 1000) == 1000  # chunked: the limit is reserved
    assert declared_body_bytes("-3", 1000) == 1000


def test_route_path_drops_the_ingress_prefix_and_headers_come_from_the_scope() -> None:
    assert route_path({"path": "/catdog/predict/pretrained", "root_path": "/catdog"}) == "/predict/pretrained"
    assert route_path({"path": "/catdog", "root_path": "/catdog"}) == "/"
    assert route_path({"path": "/v2/models/m/infer", "root_path": ""}) == "/v2/models/m/infer"
    scope = {"headers": [(b"x-request-timeout", b"2"), (b"content-length", b"9")]}
    assert header(scope, b"content-length") == "9"
    assert header(scope, b"expect") is None
