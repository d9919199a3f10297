"""imaging: format sniffing, orientation, mode conversion, and preprocessing values against references."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.dataplane.card import InputSpec, Preprocessing
from service.dataplane.imaging import ImageLimits, decode, preprocess, sniff_format, to_rgb
from service.errors import EmptyInput, InvalidImage, PayloadTooLarge, TooManyPixels, UnsupportedMediaType
from tests.support.images import BLUE, RED, encode, png_declaring, solid

LIMITS = ImageLimits(max_bytes=10_000_000, max_pixels=50_000_000)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"])
def test_sniff_supported(fmt: str) -> None:
    assert sniff_format(encode(solid(), fmt)) == fmt


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (b"%PDF-1.7 ...", "PDF"),
        (b"PK\x03\x04zipzip", "ZIP"),
        (b"  <!DOCTYPE html><html></html>", "HTML"),
        (b"just some words", "text"),
        (b"\x00\x01\x02\xfe\xff\xfe", "unknown binary"),
    ],
)
def test_sniff_refuses_non_images(data: bytes, kind: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=kind):
        sniff_format(data)


def test_decode_limits() -> None:
    with pytest.raises(EmptyInput):
        decode(b"", LIMITS)
    with pytest.raises(PayloadTooLarge):
        decode(encode(solid(), "PNG"), ImageLimits(max_bytes=10, max_pixels=100))
    with pytest.raises(TooManyPixels, match="pixels"):
        decode(png_declaring(100_000, 100_000), LIMITS)
    with pytest.raises(TooManyPixels):
        decode(encode(solid(size=(100, 100)), "PNG"), ImageLimits(max_bytes=10_000, max_pixels=9_999))
    jpeg = encode(solid(size=(200, 200)), "JPEG")
    with pytest.raises(InvalidImage, match="JPEG"):
        decode(jpeg[:200], LIMITS)


def test_exif_orientation_is_applied() -> None:
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))  # stored: left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    decoded = decode(encode(image, "JPEG", exif=exif, quality=95), LIMITS)
    assert decoded.image.size == (20, 40)
    assert (decoded.width, decoded.height) == (40, 20)  # as uploaded
    top, bottom = decoded.image.getpixel((10, 5)), decoded.image.getpixel((10, 35))
    assert isinstance(top, tuple)
    assert isinstance(bottom, tuple)
    assert top[0] > 150 > top[2]  # the stored left half is now on top
    assert bottom[2] > 150 > bottom[0]


def _rgb(image: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    pixel = to_rgb(image).getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def test_mode_conversions() -> None:
    assert _rgb(Image.new("L", (2, 2), 77)) == (77, 77, 77)
    assert _rgb(Image.new("1", (2, 2), 1)) == (255, 255, 255)
    assert _rgb(Image.new("RGBA", (2, 2), (10, 20, 30, 0))) == (255, 255, 255)  # transparent -> white
    assert _rgb(Image.new("RGBA", (2, 2), (10, 20, 30, 255))) == (10, 20, 30)
    assert _rgb(Image.new("LA", (2, 2), (0, 128))) == (127, 127, 127)  # half-transparent black on white
    palette = Image.new("P", (2, 2), 0)
    palette.putpalette([200, 100, 50] * 256)
    assert _rgb(palette) == (200, 100, 50)
    palette.info["transparency"] = 0
    assert _rgb(palette) == (255, 255, 255)
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # pure red in CMYK
    assert _rgb(cmyk) == (255, 0, 0)


def test_sixteen_bit_grey_is_rescaled_not_clipped() -> None:
    array = np.array([[65535, 32896], [0, 257]], dtype=np.uint16)
    image = Image.fromarray(array)  # mode I;16
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    decoded = decode(buffer.getvalue(), LIMITS).image
    values = np.asarray(decoded)[:, :, 0]
    assert values.tolist() == [[255, 128], [0, 1]]


def test_gif_first_frame() -> None:
    frames = [solid(RED), solid(BLUE)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    pixel = decode(buffer.getvalue(), LIMITS).image.getpixel((5, 5))
    assert isinstance(pixel, tuple)
    assert pixel[0] > 150 > pixel[2]


def test_normalisation_values_by_hand() -> None:
    spec = Preprocessing(resize_short_side=4, crop="center", mean=(100.0, 50.0, 0.0), std=(50.0, 25.0, 2.0))
    out = preprocess(Image.new("RGB", (8, 4), (200, 100, 4)), spec, InputSpec(height=4, width=4))
    assert out.shape == (3, 4, 4)
    assert out.dtype == np.float32
    assert out.flags.c_contiguous
    np.testing.assert_allclose(out[0], 2.0)  # (200 - 100) / 50
    np.testing.assert_allclose(out[1], 2.0)  # (100 - 50) / 25
    np.testing.assert_allclose(out[2], 2.0)  # (4 - 0) / 2


def test_resize_and_centre_crop_geometry() -> None:
    """300x200 -> short side 100 -> 150x100 -> centre 80x80 starts at x=35, y=10."""
    gradient = np.tile((np.arange(300) % 256).astype(np.uint8)[None, :, None], (200, 1, 3))
    image = Image.fromarray(gradient, "RGB")
    spec = Preprocessing(resize_short_side=100, crop="center")
    out = preprocess(image, spec, InputSpec(height=80, width=80))
    reference = np.asarray(image.resize((150, 100), Image.Resampling.BILINEAR).crop((35, 10, 115, 90)), np.float32)
    np.testing.assert_array_equal(out, reference.transpose(2, 0, 1))


def test_crop_none_resizes_to_the_input() -> None:
    out = preprocess(solid(size=(300, 100)), Preprocessing(crop="none"), InputSpec(height=24, width=32))
    assert out.shape == (3, 24, 32)


def test_matches_torchvision_reference() -> None:
    """The preprocessing the models were trained and converted with: torchvision Resize + CenterCrop + Normalize."""
    transforms = pytest.importorskip("torchvision.transforms")
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (333, 500, 3), dtype=np.uint8), "RGB")
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    reference = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize([m / 255 for m in mean], [s / 255 for s in std]),
        ]
    )(image).numpy()
    ours = preprocess(image, Preprocessing(resize_short_side=256, mean=mean, std=std), InputSpec(height=224, width=224))
    # The fast path resamples only the crop window: at most one grey level from the reference, rarely that.
    one_level = 1.0 / min(std) + 1e-5
    difference = np.abs(ours - reference)
    assert difference.max() <= one_level
    assert np.mean(difference > 1e-4) < 0.01
