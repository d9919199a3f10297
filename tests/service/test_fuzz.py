"""Property-based fuzzing: the decode/preprocess path only ever raises the documented errors, and the live API
never answers 5xx and always matches its own OpenAPI schema (schemathesis). Both bounded by example counts."""

from __future__ import annotations

import io
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.dataplane.card import InputSpec, Preprocessing
from service.dataplane.imaging import ImageLimits, count_frames, load_tensor, sniff_format
from service.errors import (
    EmptyInput,
    InvalidImage,
    PayloadTooLarge,
    TooManyFrames,
    TooManyPixels,
    UnsupportedMediaType,
)
from tests.support.hostile import animated_gif, encode, multipage_tiff, noise
from tests.support.server import ServiceProcess

DOCUMENTED = (EmptyInput, InvalidImage, PayloadTooLarge, TooManyFrames, TooManyPixels, UnsupportedMediaType)
LIMITS = ImageLimits(max_bytes=2_000_000, max_pixels=1_000_000, max_frames=50)
SPEC = Preprocessing(resize_short_side=36, crop="center", interpolation="bilinear", mean=[127.5] * 3, std=[127.5] * 3)
SIZE = InputSpec(name="input", height=32, width=32)


@cache
def seeds() -> list[bytes]:
    """Small valid files in every accepted format and the awkward modes (palette, alpha, 16-bit, CMYK, EXIF)."""
    rgb = noise((40, 30), seed=1)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: exercises exif_transpose
    return [
        encode(rgb, "JPEG", quality=80),
        encode(rgb, "JPEG", exif=exif.tobytes()),
        encode(rgb.convert("CMYK"), "JPEG"),
        encode(rgb, "PNG"),
        encode(rgb.convert("RGBA"), "PNG"),
        encode(rgb.convert("I;16"), "PNG"),
        encode(rgb.convert("P"), "PNG", transparency=0),
        encode(rgb, "WEBP"),
        encode(rgb, "WEBP", lossless=True),
        encode(rgb, "BMP"),
        encode(rgb.convert("P"), "GIF"),
        animated_gif(5),
        encode(rgb, "TIFF"),
        encode(rgb, "TIFF", compression="tiff_deflate"),
        multipage_tiff(3),
    ]


def _decode(data: bytes) -> None:
    try:
        tensor, image = load_tensor(data, SPEC, SIZE, LIMITS)
    except DOCUMENTED:
        return
    assert tensor.shape == (3, 32, 32)
    assert image.width * image.height <= LIMITS.max_pixels


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_random_bytes_raise_only_documented_errors(data: bytes) -> None:
    _decode(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(15)), st.binary(min_size=1, max_size=64))
def test_random_bytes_behind_real_magic_raise_only_documented_errors(index: int, tail: bytes) -> None:
    seed = seeds()[index]
    _decode(seed[:16] + tail)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "overwrite"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 32))]
        else:
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[at : at + len(chunk)] = chunk
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_images_raise_only_documented_errors(data: bytes) -> None:
    _decode(data)


@settings(max_examples=200, deadline=None)
@given(mutated())
def test_frame_counting_is_total_and_bounded(data: bytes) -> None:
    """The GIF/TIFF walkers never raise or loop, whatever the bytes after the magic."""
    try:
        fmt = sniff_format(data)
    except UnsupportedMediaType:
        return
    if fmt in ("GIF", "TIFF"):
        count = count_frames(data, fmt, Image.new("RGB", (1, 1)), limit=50)
        assert 0 <= count <= 51


def test_frame_count_matches_pillow_on_valid_files() -> None:
    for data in (animated_gif(1), animated_gif(7), multipage_tiff(1), multipage_tiff(4)):
        source = Image.open(io.BytesIO(data))
        assert count_frames(data, sniff_format(data), source, limit=100) == source.n_frames


# --- schemathesis against the live service ---------------------------------------------------------------------

schemathesis = pytest.importorskip("schemathesis")


# What the schema can promise. Not `positive_data_acceptance`: a schema-valid body (any bytes as `file`) is
# still refused when it is not an image, which OpenAPI cannot express.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
]


def test_api_matches_its_schema_and_never_answers_5xx(service: ServiceProcess) -> None:
    """Every operation, generated requests (valid and not): no 5xx, status, headers and body as documented."""
    schema = schemathesis.openapi.from_url(f"{service.base_url}/openapi.json")
    labels = []
    for result in schema.get_all_operations():
        operation = result.ok()
        labels.append(operation.label)

        @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy())
        def call(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        call()
    assert any("predict" in label for label in labels), labels
    assert service.client.get("/readyz").status_code == 200
