"""Images made in memory for tests: solid colours in every format the service accepts."""

from __future__ import annotations

import io
import zlib
from typing import Any

from PIL import Image

RED = (220, 30, 30)
BLUE = (30, 30, 220)


def solid(colour: tuple[int, int, int] = RED, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    return Image.new("RGB", size, colour).convert(mode)


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares width x height: a decompression bomb's calling card."""
    data = bytearray(encode(solid(size=(1, 1)), "PNG"))
    data[16:20] = width.to_bytes(4, "big")
    data[20:24] = height.to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # IHDR's CRC, so the header stays valid
    return bytes(data)
