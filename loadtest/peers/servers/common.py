"""What every peer server does per image, in one of two works (`--work`):

- `same`: catdog's own per-image work: the card (`ModelCard`), the decode and preprocessing (`load_tensor`, with
  catdog's default image limits) and the ONNX Runtime session (`OnnxModel`, one intra-op thread per usable CPU, as
  `catdog serve` sets it) on the file catdog would serve. Peers differ only in how they serve.
- `card`: what a user of the framework writes from the model card: Pillow's draft decode to the card's short
  side, bicubic resize, centre crop, (x - mean) / std (`card_tensor`), and a plain
  `onnxruntime.InferenceSession` on the FP32 model file with the default session options the frameworks'
  ONNX examples use.

Imports only what `service.dataplane` needs (numpy, Pillow, ONNX Runtime, pydantic, and whatever imaging library
the project adds), so it runs in every peer's venv."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from service.dataplane.card import InputSpec, ModelCard, Preprocessing
from service.dataplane.cpu import this_cpu
from service.dataplane.imaging import ImageLimits, load_tensor
from service.dataplane.postprocess import softmax
from service.dataplane.runtime import CPU, OnnxModel

MIB = 1024 * 1024
LIMITS = ImageLimits(max_bytes=10 * MIB, max_pixels=40_000_000)
"""catdog's defaults (service/settings.py: max_upload_bytes, max_image_pixels; tests check they agree)."""


Work = Literal["same", "card"]
WORKS: tuple[Work, ...] = ("same", "card")


def card_tensor(data: bytes, spec: Preprocessing, size: InputSpec) -> np.ndarray:
    """The preprocessing a user writes from the card in Pillow (as torchvision's Resize + CenterCrop and the
    frameworks' image examples do it): `draft` to the card's short side (libjpeg's DCT scaling: the largest
    reduction that keeps the short side at least that long), RGB, bicubic resize of the short side, centre crop,
    (x - mean) / std as float32 [3, H, W]. No limits, no EXIF orientation: what the examples leave out."""
    opened = Image.open(io.BytesIO(data))
    short = spec.resize_short_side or min(size.width, size.height)
    opened.draft("RGB", (short, short))
    image = opened.convert("RGB")
    w, h = image.size
    if spec.crop != "center":
        resized = (size.width, size.height)
    else:  # torchvision's Resize(short): the long side truncated
        resized = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    image = image.resize(resized, filters[spec.interpolation])
    left, top = round((image.width - size.width) / 2), round((image.height - size.height) / 2)
    image = image.crop((left, top, left + size.width, top + size.height))
    pixels = np.asarray(image, dtype=np.float32)
    mean, std = np.asarray(spec.mean, dtype=np.float32), np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


class _CardSession:
    """The ONNX Runtime session a framework's ONNX example builds: defaults everywhere, the CPU provider."""

    def __init__(self, path: Path, input_name: str, output_name: str | None) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name = input_name
        self.outputs = [output_name] if output_name else None

    def run(self, batch: np.ndarray) -> Any:
        return self.session.run(self.outputs, {self.input_name: batch})[0]


class Classifier:
    """JPEG bytes in, probabilities out: the per-image work of `work` (see above), one image or a batch per ONNX
    Runtime run."""

    def __init__(
        self,
        model_dir: Path,
        model: str,
        precision: Literal["auto", "fp32", "int8"] = "auto",
        work: Work = "same",
    ) -> None:
        self.card = ModelCard.load(model_dir / model / "model.json")
        self.labels = list(self.card.labels)
        self.work = work
        path = model_dir / model
        self.runtime: OnnxModel | _CardSession
        if work == "card":
            self.onnx_file = self.card.onnx.file  # the model file the card publishes: FP32
            self.runtime = _CardSession(path / self.onnx_file, self.card.input.name, self.card.output.name)
        else:
            # The file `catdog serve` picks for the same CATDOG_PRECISION (auto: the card's default precision).
            served = self.card.resolve(precision, int8_native=this_cpu().native)
            self.onnx_file = served.file
            self.runtime = OnnxModel(
                path / self.onnx_file,
                input_name=self.card.input.name,
                output_name=self.card.output.name,
                providers=[CPU],
                exact_int8=served.exact_int8,
            )
        self.predict([_blank_jpeg()])  # warm-up, as catdog does before it reports ready

    def tensor(self, data: bytes) -> np.ndarray:
        if self.work == "card":
            return card_tensor(data, self.card.preprocessing, self.card.input)
        return load_tensor(data, self.card.preprocessing, self.card.input, LIMITS)[0]

    def predict(self, images: list[bytes]) -> np.ndarray:
        """[N] JPEGs -> [N, labels] float32 probabilities (softmax applied when the card says logits)."""
        out = self.runtime.run(np.stack([self.tensor(data) for data in images]))
        return softmax(out) if self.card.output.kind == "logits" else out


def _blank_jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (127, 127, 127)).save(buffer, "JPEG")
    return buffer.getvalue()


def arguments(description: str) -> argparse.Namespace:
    """The options every peer server takes from the harness."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--model", default="pretrained")
    parser.add_argument("--port", type=int, required=True, help="HTTP port (loopback)")
    parser.add_argument("--ports", type=int, nargs="*", default=[], help="extra free ports (gRPC, metrics)")
    parser.add_argument("--max-batch", type=int, default=1, help="1: the framework's batching off")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0)
    parser.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto", help="as CATDOG_PRECISION")
    # Not `--work`: KServe parses the same argv and would take it for an abbreviation of its `--workers`.
    parser.add_argument("--work-per-image", dest="work", choices=WORKS, default="same", help="same or card")
    parser.add_argument("--workdir", type=Path, help="a scratch folder the framework may write to")
    return parser.parse_args()
