"""Where a JPEG's preprocessing goes (`python -m loadtest.decode_profile [JPEG ...]`, under `taskset -c N` for one
core): per image, the CPU ms (`time.process_time`, best of --repeat, so other work on a shared machine does not
count) of each stage of `load_tensor`'s path and of the pipeline a user writes from the card in Pillow, and how
far each moves the model's probabilities from the reference preprocessing (loadtest/answers.py).

Stages: the checks before any pixel; libjpeg-turbo's decode at the scale `load_tensor` chooses, and at 1/8 (the
entropy decoding every scale pays, plus a 1/64-size inverse DCT: what no scale avoids); the layout of the decoded
rows into a Pillow image; the resample of the crop window; the normalise. Default images: the bench's JPEGs."""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
from PIL import Image

from loadtest import answers, bench
from loadtest.peers.servers.common import card_tensor
from service.dataplane import imaging
from service.dataplane.card import InputSpec, ModelCard, Preprocessing
from service.dataplane.postprocess import softmax


def best_ms(work: Callable[[], object], repeat: int) -> float:
    """The least CPU time of `repeat` calls, in ms."""
    times = []
    for _ in range(repeat):
        started = time.process_time()
        work()
        times.append(time.process_time() - started)
    return round(min(times) * 1000, 3)


def stages(data: bytes, spec: Preprocessing, size: InputSpec, repeat: int) -> dict[str, Any]:
    """CPU ms of each stage of load_tensor's path for one (upright, YCbCr or grey) JPEG, the whole, and the card's
    Pillow pipeline."""
    limits = answers.LIMITS
    _, _, width, height = imaging._open(data, limits)
    box = imaging._upright_box(width, height, 1, spec, size)
    eighths = imaging._jpeg_eighths(box, size)

    def decode(at: int) -> np.ndarray:
        wanted = (math.ceil(width * at / 8), math.ceil(height * at / 8))
        rows: np.ndarray = simplejpeg.decode_jpeg(
            data, colorspace="RGB", min_width=wanted[0], min_height=wanted[1], strict=True
        )
        return rows

    rows = decode(eighths)
    stored = Image.fromarray(rows, "RGB")
    scale = 1.0 if stored.size == (width, height) else imaging._scale_of(width, height, *stored.size)
    pixels = imaging._resample(stored, box, scale, 1, spec, size)
    return {
        "size": f"{width}x{height}",
        "bytes": len(data),
        "scale": f"{eighths}/8",
        "checks": best_ms(lambda: imaging._open(data, limits), repeat),
        "decode": best_ms(lambda: decode(eighths), repeat),
        "decode_1/8": best_ms(lambda: decode(1), repeat),
        "layout": best_ms(lambda: Image.fromarray(rows, "RGB"), repeat),
        "resample": best_ms(lambda: imaging._resample(stored, box, scale, 1, spec, size), repeat),
        "normalise": best_ms(lambda: imaging.normalise(pixels, spec), repeat),
        "load_tensor": best_ms(lambda: imaging.load_tensor(data, spec, size, limits), repeat),
        "card_pipeline": best_ms(lambda: card_tensor(data, spec, size), repeat),
    }


def deviations(model_dir: Path, images: dict[str, bytes]) -> dict[str, dict[str, float]]:
    """image -> max |dp| against the reference of load_tensor and of the card's pipeline (the card's own file)."""
    import onnxruntime as ort

    card = ModelCard.load(model_dir / "model.json")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model_dir / card.onnx.file), options, providers=["CPUExecutionProvider"])
    spec, size = card.preprocessing, card.input
    out = {}
    for name, data in images.items():
        batch = np.stack(
            [
                answers.reference_tensor(data, spec, size),
                imaging.load_tensor(data, spec, size, answers.LIMITS)[0],
                card_tensor(data, spec, size),
            ]
        )
        rows = session.run([card.output.name] if card.output.name else None, {card.input.name: batch})[0]
        probs = softmax(rows) if card.output.kind == "logits" else rows
        out[name] = {
            "load_tensor": round(float(np.abs(probs[1] - probs[0]).max()), 5),
            "card_pipeline": round(float(np.abs(probs[2] - probs[0]).max()), 5),
        }
    return out


def markdown(timing: dict[str, dict[str, Any]], answers_: dict[str, dict[str, float]]) -> str:
    columns = ("checks", "decode", "decode_1/8", "layout", "resample", "normalise", "load_tensor", "card_pipeline")
    lines = [
        "| JPEG | scale | " + " | ".join(columns) + " | dp load_tensor | dp card |",
        "| --- | --- |" + " ---: |" * (len(columns) + 2),
    ]
    for name, row in timing.items():
        cells = " | ".join(f"{row[c]:.2f}" for c in columns)
        dp = answers_.get(name, {})
        lines.append(
            f"| {name} ({row['size']}, {row['bytes'] // 1000} KB) | {row['scale']} | {cells} "
            f"| {dp.get('load_tensor', float('nan')):.4f} | {dp.get('card_pipeline', float('nan')):.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", nargs="*", type=Path, help="JPEGs (default: the bench's four)")
    parser.add_argument("--model-dir", type=Path, default=bench.REPO_ROOT / "models" / "pretrained")
    parser.add_argument("--repeat", type=int, default=15, help="runs per stage; the least CPU time counts")
    parser.add_argument("--out", type=Path, default=None, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    bench_images = bench.make_images(Path(tempfile.gettempdir()) / "catdog-bench-images")
    paths = args.images or [path for size in ("small", "large") for path in bench_images[size]]
    images = {p.name: p.read_bytes() for p in paths}
    card = ModelCard.load(args.model_dir / "model.json")
    timing = {name: stages(data, card.preprocessing, card.input, args.repeat) for name, data in images.items()}
    found = deviations(args.model_dir, images)
    if args.out:
        args.out.write_text(json.dumps({"timing": timing, "answers": found}, indent=2))
    print(markdown(timing, found))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
