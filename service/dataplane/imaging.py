"""Bytes in, a normalised float32 [3, H, W] tensor out. Every image limit is enforced here, before the
expensive step it protects: the format is sniffed from magic bytes, the declared size is checked before any
pixel is decoded, and JPEGs are decoded at reduced scale (libjpeg-turbo's DCT-domain scaling) when the model
needs fewer pixels. How close the fast path stays to the reference preprocessing is measured on the models'
answers: tests/service/dataplane/test_answer_budget.py, `python -m loadtest answers`, docs/benchmarks.md."""

from __future__ import annotations

import contextlib
import io
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import simplejpeg
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
REDUCING_GAP: float | None = None
"""No integer box pre-shrink before the final resample (Pillow's `reducing_gap`): at 2.0 it moved the shipped
models' probabilities by up to 0.018 on 2 MP photos, past the answer budget. Large JPEGs are shrunk in the DCT
domain instead (JPEG_OVERSAMPLING), which leaves the resample little to do."""


@dataclass(frozen=True, slots=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int
    max_frames: int = 1000


@dataclass(frozen=True, slots=True)
class DecodedImage:
    """The decoded pixels and what the client sent (for metrics and logs). From decode(): the upright RGB image.
    From load_tensor(): the pixels as decoded for the model (perhaps at reduced scale, in the stored
    orientation); width and height are always the file's own."""

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
    source, fmt, width, height = _open(data, limits)
    with _decoding(fmt):
        if target is not None and fmt == "JPEG":
            source.draft("RGB", _draft_request(width, height, target))
        source.seek(0)  # animated formats: the first frame
        source.load()
        ImageOps.exif_transpose(source, in_place=True)  # in place: no copy of the (usual) upright image
        rgb = to_rgb(source)
    return DecodedImage(image=rgb, format=fmt, width=width, height=height, num_bytes=len(data))


def _open(data: bytes, limits: ImageLimits) -> tuple[Image.Image, str, int, int]:
    """Every check that needs no pixel decoded: bytes, format by content, declared pixels, frames. Returns the
    opened (header-parsed) image, its format and declared size."""
    if not data:
        raise EmptyInput("the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {limits.max_bytes}")
    fmt = sniff_format(data)
    with _decoding(fmt):
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
    return source, fmt, width, height


@contextlib.contextmanager
def _decoding(fmt: str) -> Iterator[None]:
    """The one mapping of decoder failures to the service's errors: bombs are too many pixels, anything else
    the decoder raises is an invalid image (with a short, safe reason)."""
    try:
        yield
    except (TooManyPixels, TooManyFrames, PayloadTooLarge):
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooManyPixels(f"image is too large to decode safely: {exc}") from None
    except Exception as exc:
        raise InvalidImage(f"could not decode the {fmt} image: {_describe(exc)}") from None


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


JPEG_OVERSAMPLING = 2.0
"""A JPEG is decoded at the smallest libjpeg-turbo scale (1/8, 1/4 or 1/2; else full) whose crop window still
holds this many pixels per model input pixel on each axis; the exact resample does the rest. DCT-domain scaling
is not the reference's filter, so this is set by the answer budget (tests/service/dataplane/test_answer_budget.py):
at 2x the shipped models' probabilities moved by at most 0.003 (a 9 MP photo then decodes at 1/4 scale); below
2x up to 0.02. A model more sensitive than these may need more (pretrained 1.0.0 needed 5x): the budget test
says so. Only the power-of-two scales: the others (3/8, 5/8, ...) have no SIMD IDCT in libjpeg-turbo and were
slower than a full decode on small JPEGs."""
_JPEG_EIGHTHS = (1, 2, 4)


def _draft_request(width: int, height: int, target: tuple[int, int]) -> tuple[int, int]:
    """The size to ask `Image.draft` for: the short side still covers JPEG_OVERSAMPLING x the target's."""
    scale = JPEG_OVERSAMPLING * max(target[0], target[1]) / min(width, height)
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


Box = tuple[float, float, float, float]


def crop_box(width: int, height: int, spec: Preprocessing, size: InputSpec) -> Box:
    """The rectangle of the upright, full-resolution image that resize-then-centre-crop turns into the model
    input, in that image's pixel coordinates. Computed from the size the client sent, never from a reduced-scale
    decode (whose rounded size would move the window by a pixel or two: measured, that alone cost up to 0.04 in
    probability)."""
    resized_w, resized_h = resize_target(width, height, spec, size)
    left = round((resized_w - size.width) / 2.0)
    top = round((resized_h - size.height) / 2.0)
    scale_x, scale_y = resized_w / width, resized_h / height
    return left / scale_x, top / scale_y, (left + size.width) / scale_x, (top + size.height) / scale_y


ORIENTATION_TAG = 0x0112
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _stored_box(box: Box, orientation: int, width: int, height: int) -> Box:
    """`box` (upright coordinates) in the stored image's coordinates; width, height: the stored size. The
    inverse of what ImageOps.exif_transpose does to the image, so the resample can run on the stored pixels
    and only the model-sized result is turned upright."""
    x0, y0, x1, y1 = box
    w, h = width, height
    corners = {
        2: ((w - x1, y0), (w - x0, y1)),
        3: ((w - x1, h - y1), (w - x0, h - y0)),
        4: ((x0, h - y1), (x1, h - y0)),
        5: ((y0, x0), (y1, x1)),
        6: ((y0, h - x1), (y1, h - x0)),
        7: ((w - y1, h - x1), (w - y0, h - x0)),
        8: ((w - y1, x0), (w - y0, x1)),
    }.get(orientation, ((x0, y0), (x1, y1)))
    (a0, b0), (a1, b1) = corners
    return a0, b0, a1, b1


def _orientation(image: Image.Image) -> int:
    """The EXIF (or XMP) orientation, as ImageOps.exif_transpose reads it; 1 when absent or unknown."""
    value = image.getexif().get(ORIENTATION_TAG, 1)
    return value if value in _TRANSPOSE else 1


def _resample(
    image: Image.Image,
    box: Box,
    scale: float,
    orientation: int,
    spec: Preprocessing,
    size: InputSpec,
) -> np.ndarray:
    """The model-sized, upright uint8 [H, W, 3] pixels of `box` (stored full-resolution coordinates) of
    `image`, which is the stored image decoded at `scale`. Only the window is resampled (`box`), in the stored
    orientation; the small result is then turned upright."""
    transposed = orientation in (5, 6, 7, 8)
    out = (size.height, size.width) if transposed else (size.width, size.height)
    window = tuple(v * scale for v in box)
    if window == (0.0, 0.0, float(image.width), float(image.height)) and out == image.size:
        resized = image  # already the model's size: resampling would be the identity
    else:
        resample = _RESAMPLING[spec.interpolation]
        resized = image.resize(out, resample, box=window, reducing_gap=REDUCING_GAP)  # type: ignore[arg-type]
    if orientation != 1:
        resized = resized.transpose(_TRANSPOSE[orientation])
    return np.asarray(resized)


def normalise(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """uint8 [H, W, C >= 3] -> float32 [3, H, W], (x - mean) / std: one float32 allocation, normalised in place."""
    tensor = np.array(pixels[:, :, :3].transpose(2, 0, 1), dtype=np.float32, order="C")
    tensor -= np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    tensor *= (1.0 / np.asarray(spec.std, dtype=np.float32))[:, None, None]
    return tensor


def preprocess(image: Image.Image, spec: Preprocessing, size: InputSpec) -> np.ndarray:
    """Resize, centre-crop and normalise an upright RGB image to a float32 [3, H, W] array.

    The same result as resize-then-crop (tests/service/dataplane/test_imaging.py), cheaper: only the crop window
    is resampled (`box`), and the float tensor is allocated once and normalised in place."""
    box = crop_box(image.width, image.height, spec, size)
    return normalise(_resample(image, box, 1.0, 1, spec, size), spec)


def load_tensor(
    data: bytes, spec: Preprocessing, size: InputSpec, limits: ImageLimits
) -> tuple[np.ndarray, DecodedImage]:
    """The whole client-bytes-to-model-input path, used by the service, the CLI and the benchmarks: every check of
    decode() first, then the fastest decode that keeps the answers (a JPEG at reduced scale by libjpeg-turbo,
    anything else by Pillow), the crop window resampled in the stored orientation, normalised.

    The returned DecodedImage holds the pixels as decoded (possibly reduced, in the stored orientation): its
    width and height are what the client sent."""
    source, fmt, width, height = _open(data, limits)
    stored: Image.Image | None = None
    with _decoding(fmt):
        orientation = _orientation(source) if fmt == "JPEG" else 1  # read at open for JPEG (APP1)
        eighths = _jpeg_eighths(_upright_box(width, height, orientation, spec, size), size) if fmt == "JPEG" else 8
        if fmt == "JPEG" and source.mode in ("RGB", "L"):
            stored = _decode_jpeg(data, eighths)
        if stored is None:  # not a JPEG, a CMYK one, or one libjpeg-turbo alone refuses: Pillow decodes it
            if eighths < 8:
                source.draft("RGB", (math.ceil(width * eighths / 8), math.ceil(height * eighths / 8)))
            source.seek(0)  # animated formats: the first frame
            source.load()
            if fmt != "JPEG":  # PNG eXIf and TIFF tags are only read with the pixels
                orientation = _orientation(source)
            stored = to_rgb(source)
    # The pixels are decoded: what follows is the service's own work (a failure here is not the client's).
    box = _stored_box(_upright_box(width, height, orientation, spec, size), orientation, width, height)
    scale = 1.0 if stored.size == (width, height) else _scale_of(width, height, stored.width, stored.height)
    tensor = normalise(_resample(stored, box, scale, orientation, spec, size), spec)
    return tensor, DecodedImage(image=stored, format=fmt, width=width, height=height, num_bytes=len(data))


WARM_UP_FORMATS = ("JPEG", "PNG", "WEBP")


def warm_up_decoders(spec: Preprocessing, size: InputSpec, limits: ImageLimits) -> None:
    """Run the whole client path (load_tensor) once per common format on a small generated picture, so the first
    request after start-up does not pay for loading a codec (a first WebP decode costs about 5x a later one): a
    scaled-from-zero deployment's first answer should be no slower than a warm one."""
    picture = Image.new("RGB", (max(size.width, 32), max(size.height, 32)), (128, 96, 64))
    for fmt in WARM_UP_FORMATS:
        buffer = io.BytesIO()
        picture.save(buffer, format=fmt)
        load_tensor(buffer.getvalue(), spec, size, limits)


def _upright_box(width: int, height: int, orientation: int, spec: Preprocessing, size: InputSpec) -> Box:
    """crop_box() of the image as shown (EXIF orientation applied) from its stored width and height."""
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return crop_box(width, height, spec, size)


def _jpeg_eighths(box: Box, size: InputSpec) -> int:
    """The smallest libjpeg-turbo scale (in eighths) whose crop window (`box`, upright) keeps JPEG_OVERSAMPLING x
    the input size on both axes."""
    window_w, window_h = box[2] - box[0], box[3] - box[1]
    for eighths in _JPEG_EIGHTHS:
        if min(window_w * eighths / 8 / size.width, window_h * eighths / 8 / size.height) >= JPEG_OVERSAMPLING:
            return eighths
    return 8


def _scale_of(width: int, height: int, scaled_w: int, scaled_h: int) -> float:
    """The exact scale of a reduced decode: libjpeg's M/8 (its size rounds up, so scaled_w / width is not it)."""
    for eighths in range(1, 9):
        if (math.ceil(width * eighths / 8), math.ceil(height * eighths / 8)) == (scaled_w, scaled_h):
            return eighths / 8
    return scaled_w / width


def _decode_jpeg(data: bytes, eighths: int) -> Image.Image | None:
    """libjpeg-turbo (simplejpeg's wheels ship it) straight to RGB at `eighths`/8 scale (RGB, not RGBX without
    a copy: Pillow resamples 3 bands a third faster than 4); None when it refuses or warns (strict): Pillow
    then decodes the file, so errors read as before. Only YCbCr and greyscale JPEGs come here (Pillow's RGB
    and L): libjpeg-turbo's CMYK conversion differs from Pillow's."""
    try:
        header = simplejpeg.decode_jpeg_header(data)
        height, width = int(header[0]), int(header[1])
        pixels = simplejpeg.decode_jpeg(
            data,
            colorspace="RGB",
            min_width=math.ceil(width * eighths / 8),
            min_height=math.ceil(height * eighths / 8),
            strict=True,
        )
    except Exception:  # any refusal: Pillow decodes the file and its errors are the ones reported
        return None
    return Image.fromarray(pixels, "RGB")
