"""Hostile and malformed inputs, and misbehaving models, for the reliability tests (made in memory)."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from tests.support.images import RED, encode, png_declaring, solid
from tests.support.onnx_models import build_colour_classifier, write_model_dir

__all__ = ["RED", "encode", "png_declaring", "solid"]  # re-exported for the hostile-input table

WHITE = (255, 255, 255)


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Incompressible pixels: a PNG of these is about 3 bytes per pixel."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


JPEG = encode(solid(), "JPEG")
PNG = encode(solid(), "PNG")
WEBP = encode(solid(), "WEBP")


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose SOF header declares width x height."""
    data = bytearray(encode(solid(size=(16, 16)), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 7] = height.to_bytes(2, "big")
    data[sof + 7 : sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    """A small deflate TIFF whose ImageWidth/ImageLength tags declare width x height."""
    data = bytearray(encode(solid(size=(8, 8)), "TIFF", compression="tiff_adobe_deflate"))
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    for i in range(count):
        at = ifd + 2 + 12 * i
        (tag,) = struct.unpack(order + "H", data[at : at + 2])
        if tag in (256, 257):  # rewritten as LONG, whatever Pillow chose
            data[at + 2 : at + 8] = struct.pack(order + "HI", 4, 1)
            data[at + 8 : at + 12] = struct.pack(order + "I", width if tag == 256 else height)
    return bytes(data)


def animated_gif(frames: int) -> bytes:
    """A GIF of `frames` distinct 4x4 frames (distinct, so Pillow keeps them all)."""
    images = []
    for i in range(frames):
        image = Image.new("P", (4, 4), i % 7)
        image.putpixel((i % 4, (i // 4) % 4), (i * 31) % 256)
        images.append(image)
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=10)


def multipage_tiff(pages: int) -> bytes:
    images = [Image.new("L", (1, 1), i % 256) for i in range(pages)]
    return encode(images[0], "TIFF", save_all=True, append_images=images[1:])


SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HTML = b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>"


def zip_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def multipart(parts: list[tuple[bytes, bytes]], boundary: bytes = b"catdogboundary", *, close: bool = True) -> bytes:
    """A multipart body from (Content-Disposition value, data) pairs, byte-exact (for names httpx would fix)."""
    body = b"".join(
        b"--"
        + boundary
        + b"\r\nContent-Disposition: "
        + disposition
        + b"\r\nContent-Type: image/jpeg\r\n\r\n"
        + data
        + b"\r\n"
        for disposition, data in parts
    )
    return body + (b"--" + boundary + b"--\r\n" if close else b"")


def build_fails_on_bright() -> onnx.ModelProto:
    """The colour classifier with a Reshape that is impossible when any input value exceeds 0.99 (a white
    image): ONNX Runtime raises at run time for such inputs only. Warm-up (zeros) and darker images run."""
    base = build_colour_classifier()
    graph = base.graph
    nodes = list(graph.node)
    # pooled [N, 3] -> Reshape to [-1, 3 + 3 * (max(input) > 0.99)]: [-1, 6] cannot hold N * 3 values for odd N.
    extra = [
        helper.make_node("ReduceMax", ["input"], ["peak"], keepdims=0),
        helper.make_node("Greater", ["peak", "threshold"], ["bright"]),
        helper.make_node("Cast", ["bright"], ["bright_i"], to=TensorProto.INT64),
        helper.make_node("Mul", ["bright_i", "three"], ["more"]),
        helper.make_node("Add", ["more", "three"], ["cols"]),
        helper.make_node("Unsqueeze", ["cols", "zero_axis"], ["cols_1d"]),
        helper.make_node("Concat", ["minus_one", "cols_1d"], ["shape"], axis=0),
        helper.make_node("Reshape", ["pooled", "shape"], ["reshaped"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(0.99, dtype=np.float32), "threshold"),
        numpy_helper.from_array(np.array(3, dtype=np.int64), "three"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "zero_axis"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one"),
    ]
    rewired = []
    for node in nodes:
        if node.op_type == "MatMul" and "pooled" in node.input:
            node.input[list(node.input).index("pooled")] = "reshaped"
        rewired.append(node)
    new_graph = helper.make_graph(
        [rewired[0], *extra, *rewired[1:]],
        graph.name,
        list(graph.input),
        list(graph.output),
        [*graph.initializer, *inits],
    )
    model = helper.make_model(new_graph, opset_imports=list(base.opset_import))
    model.ir_version = base.ir_version
    onnx.checker.check_model(model)
    return model


def write_slow_repository(root: Path, *, extra_matmuls: int = 8000) -> Path:
    """`pretrained` answering like the tiny one but slowly (about 0.1 s a run on one thread)."""
    three = np.array([[4.0, -4.0, 0.0], [0.0, 0.0, 4.0], [-4.0, 4.0, 0.0]], dtype=np.float32)
    write_model_dir(
        root,
        "pretrained",
        labels=("cat", "dog", "other"),
        model=build_colour_classifier(three, extra_matmuls=extra_matmuls),
    )
    return root


def write_faulty_repository(root: Path) -> Path:
    write_model_dir(root, "pretrained", labels=("cat", "dog"), model=build_fails_on_bright())
    return root
