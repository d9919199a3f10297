"""Bytes in, a normalised float32 [3, H, W] tensor out. Every image limit is enforced here, before the
expensive step it protects: the format is sniffed from magic bytes, the declared size is checked before any
pixel is decoded, and JPEGs are decoded at reduced scale when the model needs fewer pixels."""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps

from service.dataplane.card import InputSpec, Preprocessing
from service.errors import (
    EmptyInput,
    InvalidImage,
    PayloadTooLarge,
    TooManyFrames,
    TooManyPixels,
    UnsupportedMediaType,
)

# Magic bytes of the formats we decode, and of common non-images named in errors.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "JPEG"),
    (b"\x89PNG\r\n\x1a\n", 0, "PNG"),
    (b"GIF87a", 0, "GIF"),
    (b"GIF89a", 0, "GIF"),
    (b"BM", 0, "BMP"),
    (b"II*\x00", 0, "TIFF"),
    (b"MM\x00*", 0, "TIFF"),
)
_NON_IMAGES: tuple[tuple[bytes, str], ...] = (  # lower-case: compared with the lowered head
    (b"%pdf", "PDF"),
    (b"pk\x03\x04", "ZIP"),
    (b"<svg", "SVG"),
    (b"<?xml", "XML/SVG"),
    (b"<!doctype html", "HTML"),
    (b"<html", "HTML"),
    (b"\x1f\x8b", "gzip"),
)
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_REPR = re.compile(r"<[^>]*>|'?/[\w./-]+'?")
_RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
REDUCING_GAP = 2.0
"""Downscales above 2x first shrink by an integer factor (box filter); Pillow rates 2.0 close to exact."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    max_frames: int = 1000


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """An upright RGB image and what the client sent (for metrics and logs)."""

    image: Image.Image
    format: str
    width: int  # as declared by the file, before any reduced-scale decode
    height: int
    num_bytes: int


def sniff_format(data: bytes) -> str:
    """The image format by content; raises UnsupportedMediaType for anything else (names and headers lie)."""
    for magic, offset, name in _SIGNATURES:
        if data.startswith(magic, offset):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    head = data[:256].lstrip().lower()
    kind = next((name for magic, name in _NON_IMAGES if head.startswith(magic)), None)
    if kind is None:
        kind = "text" if _looks_like_text(data[:512]) else "unknown binary data"
    raise UnsupportedMediaType(f"not a supported image ({', '.join(SUPPORTED_FORMATS)}): content looks like {kind}")


def _looks_like_text(sample: bytes) -> bool:
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode(data: bytes, limits: ImageLimits, target: tuple[int, int] | None = None) -> DecodedImage:
    """Validate and decode to upright RGB. `target` (w, h) lets JPEG decode at the smallest scale >= target."""
    if not data:
        raise EmptyInput("the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {limits.max_bytes}")
    fmt = sniff_format(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            source = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
        width, height = source.size
        if width * height > limits.max_pixels:
            raise TooManyPixels(
                f"image declares {width}x{height} = {width * height} pixels; the limit is {limits.max_pixels}"
            )
        frames = count_frames(data, fmt, source, limits.max_frames)
        if frames > limits.max_frames:
            raise TooManyFrames(
                f"image has more than {limits.max_frames} frames; the limit is {limits.max_frames} "
                "(only the first is used)"
            )
        if target is not None and fmt == "JPEG":
            source.draft("RGB", _draft_request(width, height, target))
        source.seek(0)  # animated formats: the first frame
        source.load()
        ImageOps.exif_transpose(source, in_place=True)  # in place: no copy of the (usual) upright image
        rgb = to_rgb(source)
    except (TooManyPixels, TooManyFrames, PayloadTooLarge):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(f"image is too large to decode safely: {exc}") from None
    except Exception as exc:
        raise InvalidImage(f"could not decode the {fmt} image: {_describe(exc)}") from None
    return DecodedImage(image=rgb, format=fmt, width=width, height=height, num_bytes=len(data))


def count_frames(data: bytes, fmt: str, source: Image.Image, limit: int) -> int:
    """How many frames the file holds, counting at most `limit + 1` and decoding none. APNG and WebP declare the
    count in a header; GIF and TIFF are walked here (Pillow's own `n_frames` parses every TIFF directory fully:
    seconds for a few MB of one-pixel pages). Only the first frame is ever decoded, so this is a cheap refusal
    of files that are clearly not photos, not what bounds the decode work."""
    if fmt == "GIF":
        return _gif_frames(data, limit + 1)
    if fmt == "TIFF":
        return _tiff_frames(data, limit + 1)
    return int(getattr(source, "n_frames", 1))


def _gif_frames(data: bytes, stop: int) -> int:
    """Image descriptors in a GIF, walking blocks without LZW decoding; a malformed tail ends the count."""
    size = len(data)
    pos = 13
    if size < pos:
        return 0
    flags = data[10]
    if flags & 0x80:
        pos += 3 << ((flags & 7) + 1)  # global colour table
    frames = 0
    while pos < size and frames < stop:
        kind = data[pos]
        if kind == 0x3B:  # trailer
            break
        if kind == 0x21 and pos + 1 < size:  # extension: label, then sub-blocks
            pos += 2
        elif kind == 0x2C and pos + 10 <= size:  # image descriptor, local colour table, LZW code size, sub-blocks
            frames += 1
            local = data[pos + 9]
            pos += 10 + ((3 << ((local & 7) + 1)) if local & 0x80 else 0) + 1
        else:
            break
        while pos < size and data[pos]:  # sub-blocks until the zero-length terminator
            pos += data[pos] + 1
        pos += 1
    return frames


def _tiff_frames(data: bytes, stop: int) -> int:
    """Image file directories in a (classic) TIFF, following next-IFD offsets; loops and bad offsets end it."""
    order: Literal["little", "big"] = "little" if data[:2] == b"II" else "big"
    offset = int.from_bytes(data[4:8], order)
    seen: set[int] = set()
    while 8 <= offset <= len(data) - 2 and offset not in seen and len(seen) < stop:
        seen.add(offset)
        entries = int.from_bytes(data[offset : offset + 2], order)
        end = offset + 2 + 12 * entries
        if end + 4 > len(data):
            break
        offset = int.from_bytes(data[end : end + 4], order)
    return max(len(seen), 1)


DRAFT_OVERSAMPLING = 4
"""libjpeg's 1/4 and 1/8 DCT-domain scaling is a crude filter: decoding straight down to the model's size put the
160 px scratch model 6.4 grey levels (mean) off the reference. Keeping 4x the target's pixels before the final
resample brings both shipped models within 0.5 levels, and a 9 MP photo still decodes at 1/2 scale (1/4 of the
pixels)."""


def _draft_request(width: int, height: int, target: tuple[int, int]) -> tuple[int, int]:
    """The size to ask `Image.draft` for: the short side still covers DRAFT_OVERSAMPLING x the target's."""
    scale = DRAFT_OVERSAMPLING * max(target[0], target[1]) / min(width, height)
    return math.ceil(width * scale), math.ceil(height * scale)


def _describe(exc: Exception) -> str:
    """A short, safe reason: first line only, no object reprs or paths from inside Pillow."""
    text = _REPR.sub("", str(exc).split("\n", 1)[0])[:200].strip()
    if text.startswith("cannot identify image file"):
        return "the data is not a valid image of that format"
    return text or type(exc).__name__


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any mode: 16-bit and float greys are rescaled (not clipped), transparency is composited
    over white, palette/CMYK/greyscale are converted."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode.startswith("I") or mode == "F":
        array = np.asarray(image, dtype=np.float64)
        peak = array.max(initial=0.0)
        if mode == "F" and peak <= 1.0:
            array = array * 255.0
        elif peak > 255.0:
            array = array / 257.0  # 16-bit range to 8-bit
        return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resize_target(width: int, height: int, spec: Preprocessing, size: InputSpec) -> tuple[int, int]:
    """The (w, h) the image is resized to before cropping, as torchvision's Resize(short_side) computes it."""
    if spec.crop == "none" or spec.resize_short_side is None:
        return size.width, size.height
    short = spec.resize_short_side
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def preprocess(image: Image.Image, spec: Preprocessing, size: InputSpec) -> np.ndarray:
    """Resize, centre-crop and normalise an RGB image to a float32 [3, H, W] array.

    Same result as resize-then-crop (tolerance: tests/service/dataplane/test_imaging_fast_path.py), cheaper:
    only the crop window is resampled (`box`), large downscales first shrink by an integer factor
    (`reducing_gap`), and the float tensor is allocated once and normalised in place."""
    resized_w, resized_h = resize_target(image.width, image.height, spec, size)
    if (image.width, image.height) != (size.width, size.height):
        left = round((resized_w - size.width) / 2.0)
        top = round((resized_h - size.height) / 2.0)
        scale_x, scale_y = resized_w / image.width, resized_h / image.height
        box = (left / scale_x, top / scale_y, (left + size.width) / scale_x, (top + size.height) / scale_y)
        resample = _RESAMPLING[spec.interpolation]
        image = image.resize((size.width, size.height), resample, box=box, reducing_gap=REDUCING_GAP)
    tensor = np.array(np.asarray(image).transpose(2, 0, 1), dtype=np.float32, order="C")
    tensor -= np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    tensor *= (1.0 / np.asarray(spec.std, dtype=np.float32))[:, None, None]
    return tensor


def load_tensor(
    data: bytes, spec: Preprocessing, size: InputSpec, limits: ImageLimits
) -> tuple[np.ndarray, DecodedImage]:
    """decode() then preprocess(): the whole client-bytes-to-model-input path, used by the service and the CLI."""
    decoded = decode(data, limits, target=_decode_target(spec, size))
    return preprocess(decoded.image, spec, size), decoded


def _decode_target(spec: Preprocessing, size: InputSpec) -> tuple[int, int]:
    if spec.crop == "none" or spec.resize_short_side is None:
        return size.width, size.height
    return spec.resize_short_side, spec.resize_short_side
