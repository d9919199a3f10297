"""Hostile and malformed requests against the real server process: each gets its documented status and JSON
error body (no traceback, no path), is counted under its `reason`, and the next, valid request still succeeds.
The table here is the one in docs/operations.md."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.hostile import (
    HTML,
    JPEG,
    PDF,
    PNG,
    SVG,
    WEBP,
    animated_gif,
    encode,
    jpeg_declaring,
    multipage_tiff,
    multipart,
    png_declaring,
    solid,
    tiff_declaring,
    zip_of,
)
from tests.support.server import ServiceProcess, assert_still_serving

LIMIT = 1_000_000
BOUNDARY = "catdogboundary"
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


def _file(data: bytes, name: str = "photo.jpg", content_type: str = "image/jpeg") -> dict[str, Any]:
    return {"files": {"file": (name, data, content_type)}}


def _raw(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    return {"content": body, "headers": headers}


class _Chunks:
    """A chunked body (no Content-Length) of `total` bytes; iterable again for every request."""

    def __init__(self, total: int, size: int = 16384) -> None:
        self.total, self.size = total, size

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(0, self.total, self.size):
            yield b"\xff\xd8\xff" + b"\0" * (self.size - 3)


# name -> (request kwargs, status, error code or None for success, rejected `reason` or None)
CASES: dict[str, tuple[dict[str, Any], int, str | None, str | None]] = {
    "zero bytes (raw body)": (_raw(b"", {"content-type": "image/jpeg"}), 422, "missing_file", "missing_file"),
    "zero bytes (file part)": (_file(b""), 400, "empty_input", "empty"),
    "1x1 PNG": (_file(encode(solid(size=(1, 1)), "PNG"), "dot.png"), 200, None, None),
    "1x1 GIF": (_file(encode(solid(size=(1, 1)), "GIF"), "dot.gif"), 200, None, None),
    "PNG sent as image/jpeg": (_file(PNG, "photo.jpg"), 200, None, None),
    "PNG declaring 100k x 100k": (
        _file(png_declaring(100_000, 100_000), "bomb.png"),
        413,
        "too_many_pixels",
        "too_many_pixels",
    ),
    "PNG declaring 3000 x 3000 (over 4 MP)": (
        _file(png_declaring(3000, 3000)),
        413,
        "too_many_pixels",
        "too_many_pixels",
    ),
    "JPEG declaring 65000 x 65000": (_file(jpeg_declaring(65_000, 65_000)), 413, "too_many_pixels", "too_many_pixels"),
    "TIFF bomb (declares 100k x 100k)": (
        _file(tiff_declaring(100_000, 100_000), "bomb.tif"),
        413,
        "too_many_pixels",
        "too_many_pixels",
    ),
    "TIFF with 2000 pages": (_file(multipage_tiff(2000), "pages.tif"), 413, "too_many_frames", "too_many_frames"),
    "GIF with 3000 frames": (_file(animated_gif(3000), "anim.gif"), 413, "too_many_frames", "too_many_frames"),
    "GIF with 50 frames (first used)": (_file(animated_gif(50), "anim.gif"), 200, None, None),
    "truncated JPEG": (_file(JPEG[: len(JPEG) // 2]), 400, "invalid_image", "undecodable"),
    "JPEG header only": (_file(JPEG[:24]), 400, "invalid_image", "undecodable"),
    "truncated PNG": (_file(PNG[: len(PNG) // 2]), 400, "invalid_image", "undecodable"),
    "PNG with a corrupt chunk (bad CRC)": (
        _file(PNG[:40] + bytes([PNG[40] ^ 0xFF]) + PNG[41:]),
        400,
        "invalid_image",
        "undecodable",
    ),
    "truncated WebP": (_file(WEBP[: len(WEBP) // 2]), 400, "invalid_image", "undecodable"),
    "corrupt WebP bitstream": (_file(WEBP[:30] + b"\xff" * 20 + WEBP[50:]), 400, "invalid_image", "undecodable"),
    "random bytes": (_file(bytes(range(256)) * 8), 415, "unsupported_media_type", "unsupported_type"),
    "SVG as .jpg": (_file(SVG), 415, "unsupported_media_type", "unsupported_type"),
    "PDF as .jpg": (_file(PDF), 415, "unsupported_media_type", "unsupported_type"),
    "HTML as .jpg": (_file(HTML), 415, "unsupported_media_type", "unsupported_type"),
    "ZIP (holding a JPEG) as .jpg": (_file(zip_of("cat.jpg", JPEG)), 415, "unsupported_media_type", "unsupported_type"),
    "JSON body": ({"json": {"image": "cat.jpg"}}, 415, "unsupported_media_type", "unsupported_type"),
    "wrong multipart boundary": (
        _raw(multipart([(b'form-data; name="file"; filename="a.jpg"', JPEG)], b"otherboundary"), MULTIPART),
        400,
        "malformed_request",
        "malformed",
    ),
    "multipart without boundary": (
        _raw(multipart([(b'form-data; name="file"; filename="a.jpg"', JPEG)]), {"content-type": "multipart/form-data"}),
        400,
        "malformed_request",
        "malformed",
    ),
    "multipart without closing boundary": (
        _raw(multipart([(b'form-data; name="file"; filename="a.jpg"', JPEG)], close=False), MULTIPART),
        400,
        "malformed_request",
        "malformed",
    ),
    "no 'file' field": (
        _raw(multipart([(b'form-data; name="image"; filename="a.jpg"', JPEG)]), MULTIPART),
        422,
        "missing_file",
        "missing_file",
    ),
    "file part without filename": (_raw(multipart([(b'form-data; name="file"', JPEG)]), MULTIPART), 200, None, None),
    "duplicate 'file' fields": (
        _raw(multipart([(b'form-data; name="file"; filename="a.jpg"', JPEG)] * 2), MULTIPART),
        200,
        None,
        None,
    ),
    "more files than allowed (5 > 4)": (
        _raw(multipart([(b'form-data; name="file"; filename="a.jpg"', JPEG)] * 5), MULTIPART),
        413,
        "too_many_files",
        "too_many_files",
    ),
    "file name of 300 characters": (_file(JPEG, "a" * 296 + ".jpg"), 200, None, None),
    "file name of 20000 characters": (_file(JPEG, "a" * 19_996 + ".jpg"), 400, "malformed_request", "malformed"),
    "non-UTF-8 file name": (
        _raw(multipart([(b'form-data; name="file"; filename="\xff\xfe\xc3(.jpg"', JPEG)]), MULTIPART),
        200,
        None,
        None,
    ),
    "Content-Length over the limit": (
        _raw(b"\xff\xd8\xff" + b"\0" * (LIMIT + 10), {"content-type": "image/jpeg"}),
        413,
        "payload_too_large",
        "too_large",
    ),
    "chunked upload over the limit": (
        {"content": _Chunks(3 * LIMIT), "headers": {"content-type": "image/jpeg"}},
        413,
        "payload_too_large",
        "too_large",
    ),
    "header of 100 KB": ({**_file(JPEG), "headers": {"x-padding": "a" * 100_000}}, 431, "headers_too_large", None),
}

_LEAKS = re.compile(r"Traceback|File \"|site-packages|/work/|/tmp/|/usr/|\.py\b")


@pytest.fixture(scope="module")
def hostile_service(tiny_repository: Path) -> Iterator[ServiceProcess]:
    env = {
        "CATDOG_MODEL_DIR": str(tiny_repository),
        "CATDOG_MAX_UPLOAD_BYTES": str(LIMIT),
        "CATDOG_MAX_IMAGE_PIXELS": "4000000",
        "CATDOG_MAX_FILES_PER_REQUEST": "4",
    }
    with ServiceProcess(env) as svc:
        yield svc


@pytest.mark.parametrize("case", CASES)
def test_hostile_input(hostile_service: ServiceProcess, case: str) -> None:
    kwargs, status, code, _ = CASES[case]
    response = hostile_service.client.post("/predict/pretrained", **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    if code is None:
        assert body["request_id"] == response.headers["x-request-id"]
        if "predictions" in body:
            assert [p["label"] for p in body["predictions"]] == ["cat", "cat"]
        else:
            assert body["label"] == "cat"
    else:
        assert set(body) == {"error"}
        assert body["error"]["code"] == code
        assert body["error"]["message"]
        assert body["error"]["request_id"] == response.headers["x-request-id"]
        assert not _LEAKS.search(response.text), response.text
    assert_still_serving(hostile_service)


def test_every_refusal_is_counted_by_reason(hostile_service: ServiceProcess) -> None:
    for case in (
        "zero bytes (file part)",
        "GIF with 3000 frames",
        "PNG declaring 100k x 100k",
        "SVG as .jpg",
        "truncated JPEG",
        "wrong multipart boundary",
        "chunked upload over the limit",
    ):
        hostile_service.client.post("/predict/pretrained", **CASES[case][0])
    metrics = hostile_service.client.get("/metrics").text
    reasons = {reason for _, _, _, reason in CASES.values() if reason}
    for reason in reasons:
        assert re.search(rf'catdog_rejected_requests_total\{{model="pretrained",reason="{reason}"\}} [1-9]', metrics), (
            reason
        )


def test_slow_trickle_of_headers_does_not_block_others(hostile_service: ServiceProcess) -> None:
    """A client that opens connections and never finishes its request holds no worker: others are served."""
    sockets = []
    try:
        for _ in range(20):
            sock = socket.create_connection(("127.0.0.1", hostile_service.port))
            sock.sendall(b"POST /predict/pretrained HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n\xff\xd8")
            sockets.append(sock)
        assert_still_serving(hostile_service)
        assert hostile_service.client.get("/readyz").status_code == 200
    finally:
        for sock in sockets:
            sock.close()
