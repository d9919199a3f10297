"""What every peer server does per image, taken from catdog itself: the card (`ModelCard`), the decode and
preprocessing (`load_tensor`, with catdog's default image limits) and the ONNX Runtime session (`OnnxModel`,
one intra-op thread per usable CPU, as `catdog serve` sets it). Peers differ only in how they serve.

Imports only what `service.dataplane` needs (numpy, Pillow, ONNX Runtime, pydantic, and whatever imaging library
the project adds), so it runs in every peer's venv."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

import numpy as np

from service.dataplane.card import ModelCard
from service.dataplane.imaging import ImageLimits, load_tensor
from service.dataplane.postprocess import softmax
from service.dataplane.runtime import CPU, OnnxModel

MIB = 1024 * 1024
LIMITS = ImageLimits(max_bytes=10 * MIB, max_pixels=40_000_000)
"""catdog's defaults (service/settings.py: max_upload_bytes, max_image_pixels; tests check they agree)."""


class Classifier:
    """JPEG bytes in, probabilities out: catdog's per-image work, one image or a batch per ONNX Runtime run."""

    def __init__(self, model_dir: Path, model: str, precision: Literal["auto", "fp32", "int8"] = "auto") -> None:
        self.card = ModelCard.load(model_dir / model / "model.json")
        self.labels = list(self.card.labels)
        # The file `catdog serve` picks for the same CATDOG_PRECISION (auto: the card's default precision).
        self.onnx_file = self.card.resolve(precision)[1]
        self.runtime = OnnxModel(
            model_dir / model / self.onnx_file,
            input_name=self.card.input.name,
            output_name=self.card.output.name,
            providers=[CPU],
        )
        self.predict([_blank_jpeg()])  # warm-up, as catdog does before it reports ready

    def tensor(self, data: bytes) -> np.ndarray:
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
    parser.add_argument("--workdir", type=Path, help="a scratch folder the framework may write to")
    return parser.parse_args()
