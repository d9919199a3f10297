"""The fast image path (load_tensor: JPEG decoded at reduced scale by libjpeg-turbo, the crop window resampled
in the stored orientation, then turned upright) against the reference preprocessing (full decode, upright,
resize of the whole image, crop, float64 normalise). Its budget is on the models' answers
(test_answer_budget.py); here the mechanics: geometry, orientation, fallbacks, and pixels close to the
reference wherever no reduced-scale decode is involved."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from loadtest.answers import reference_tensor
from service.dataplane import imaging
from service.dataplane.card import InputSpec, Preprocessing
from service.dataplane.imaging import ImageLimits, crop_box, load_tensor, preprocess, resize_target, to_rgb
from service.errors import InvalidImage
from tests.support.images import encode

LIMITS = ImageLimits(max_bytes=64 * 1024 * 1024, max_pixels=100_000_000)
LITE0 = (Preprocessing(resize_short_side=256, mean=(127.0,) * 3, std=(128.0,) * 3), InputSpec(height=224, width=224))
WIDE = (
    Preprocessing(resize_short_side=64, interpolation="bicubic", mean=(120.0,) * 3, std=(60.0,) * 3),
    InputSpec(height=40, width=56),  # not square: a transposed orientation must not swap the axes
)


def _photo(rng_seed: int = 0, size: tuple[int, int] = (300, 200)) -> Image.Image:
    """A smooth gradient with some texture: every pixel distinct enough that a wrong flip or shift shows."""
    rng = np.random.default_rng(rng_seed)
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    base = np.stack([200 * x + 20, 180 * y + 30, 120 * (1 - x) * y + 60], axis=-1)
    noise = rng.normal(0, 6, (h, w, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_every_exif_orientation_matches_upright_then_resize(orientation: int, fmt: str) -> None:
    """The crop window is mapped into the stored image and only the model-sized result is turned upright:
    the same pixels as rotating first (the reference), within resampling rounding."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(_photo(), fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))
    for spec, size in (LITE0, WIDE):
        fast, decoded = load_tensor(data, spec, size, LIMITS)
        assert (decoded.width, decoded.height) == (300, 200)  # as the file declares
        assert fast.shape == (3, size.height, size.width)
        levels = np.abs(fast - reference_tensor(data, spec, size)) * np.asarray(spec.std)[:, None, None]
        assert float(levels.max()) <= 3.0, (orientation, fmt, float(levels.max()))
        assert float(levels.mean()) < 0.5, (orientation, fmt, float(levels.mean()))


def test_stored_box_is_the_inverse_of_exif_transpose() -> None:
    """A box drawn on the upright image covers the same pixels as its stored counterpart on the stored one."""
    stored = _photo(size=(30, 20))
    box = (3.0, 2.0, 13.0, 9.0)
    for orientation, method in imaging._TRANSPOSE.items():
        upright = stored.transpose(method)
        x0, y0, x1, y1 = (int(v) for v in imaging._stored_box(box, orientation, *stored.size))
        window = stored.crop((x0, y0, x1, y1)).transpose(method)
        expected = upright.crop(tuple(int(v) for v in box))
        assert np.array_equal(np.asarray(window), np.asarray(expected)), orientation


@pytest.mark.parametrize("size", [(640, 480), (1632, 1224), (3464, 2598)])
def test_reduced_scale_jpeg_keeps_the_geometry(size: tuple[int, int]) -> None:
    """The crop window comes from the declared size, not from the reduced decode's rounded one; the decode
    scale is the smallest power of two that keeps JPEG_OVERSAMPLING x the input size."""
    spec, input_size = LITE0
    data = encode(_photo(size=size), "JPEG", quality=90)
    fast, decoded = load_tensor(data, spec, input_size, LIMITS)
    eighths = imaging._jpeg_eighths(crop_box(*size, spec, input_size), input_size)
    assert decoded.image.size == (-(-size[0] * eighths // 8), -(-size[1] * eighths // 8))
    window = (crop_box(*size, spec, input_size)[2] - crop_box(*size, spec, input_size)[0]) * eighths / 8
    assert window >= imaging.JPEG_OVERSAMPLING * input_size.width or eighths == 8
    levels = np.abs(fast - reference_tensor(data, spec, input_size)) * 128.0
    assert float(levels.mean()) < 3.0


def test_cmyk_jpeg_goes_through_pillow() -> None:
    """libjpeg-turbo's CMYK conversion differs from Pillow's: CMYK JPEGs keep Pillow's decode (and its colours)."""
    data = encode(Image.new("CMYK", (64, 48), (0, 255, 255, 0)), "JPEG", quality=95)
    spec = Preprocessing(resize_short_side=32)
    tensor, decoded = load_tensor(data, spec, InputSpec(height=32, width=32), LIMITS)
    assert decoded.format == "JPEG"
    assert tensor[:, 16, 16].round().tolist() == [255.0, 0.0, 0.0]


def test_greyscale_jpeg_is_rgb() -> None:
    data = encode(Image.new("L", (64, 48), 77), "JPEG", quality=95)
    tensor, _ = load_tensor(data, Preprocessing(resize_short_side=32), InputSpec(height=32, width=32), LIMITS)
    assert np.allclose(tensor, 77.0, atol=1.0)


def test_a_jpeg_libjpeg_turbo_refuses_fails_as_pillow_says() -> None:
    """Truncated: simplejpeg (strict) refuses, Pillow decodes or refuses it, and its error is the one reported."""
    data = encode(_photo(size=(400, 300)), "JPEG", quality=90)
    with pytest.raises(InvalidImage, match="could not decode the JPEG image"):
        load_tensor(data[: len(data) // 2], *LITE0, LIMITS)


def test_resize_shortcut_is_close_to_resize_then_crop(photos: dict[str, Path]) -> None:
    """Without a reduced-scale decode (PNG, WebP, small JPEGs) the crop-window resample is the reference's
    resize within rounding: the window's edges fall between pixels (measured: p99 <= 1 level)."""
    spec, size = LITE0
    for path in sorted(photos.values()):
        image = to_rgb(Image.open(path))
        image.load()
        levels = np.abs(preprocess(image, spec, size) - reference_tensor(path.read_bytes(), spec, size)) * 128.0
        assert float(np.percentile(levels, 99)) <= 3.0, path.name
        assert float(levels.mean()) < 0.5, path.name


def test_fast_tensor_is_float32_contiguous() -> None:
    for fmt in ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP"):
        data = encode(_photo(size=(90, 70)), fmt)
        tensor, decoded = load_tensor(data, *WIDE, LIMITS)
        assert tensor.dtype == np.float32
        assert tensor.flags.c_contiguous
        assert tensor.shape == (3, 40, 56)
        assert decoded.format == fmt


def test_geometry_helpers_agree_with_torchvision_sizes() -> None:
    spec, size = LITE0
    assert resize_target(640, 480, spec, size) == (341, 256)
    left, top, right, bottom = crop_box(640, 480, spec, size)
    assert (right - left, bottom - top) == pytest.approx((224 * 480 / 256, 224 * 480 / 256), rel=0.01)


def test_decode_keeps_its_upright_rgb_contract() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(_photo(size=(40, 20)), "JPEG", exif=exif)
    decoded = imaging.decode(data, LIMITS)
    assert decoded.image.size == (20, 40)
    assert decoded.image.mode == "RGB"
    assert io.BytesIO(data).getbuffer().nbytes == decoded.num_bytes
