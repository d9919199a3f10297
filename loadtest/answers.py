"""The answer budget of the fast preprocessing (`python -m loadtest answers`): for every model in a repository,
on the bundled photos and on re-encodings of some of them at 0.3, 2, 9 and 24 MP as JPEG, PNG and WebP, how far
the service's `load_tensor` moves the model's probabilities from the reference preprocessing (full decode,
the card's resize of the whole image, crop, normalise in float64), whether any label changes under the card's
decision rule, and what each step of the fast path costs per image.

The budget (tests/service/dataplane/test_answer_budget.py holds it in CI): every probability within 0.01 of the
reference's, no label changed. Re-encodings are cached (a 24 MP PNG or WebP takes seconds to encode).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from service.dataplane import imaging
from service.dataplane.card import InputSpec, ModelCard, Preprocessing
from service.dataplane.postprocess import decide, softmax

REPO_ROOT = Path(__file__).resolve().parents[1]
PHOTOS = REPO_ROOT / "data" / "images"
BUDGET = 0.01
"""Largest allowed |probability - reference probability|, any label, any image."""
SIZES: dict[str, tuple[int, int]] = {
    "0.3MP": (640, 480),
    "2MP": (1632, 1224),
    "9MP": (3464, 2598),
    "24MP": (5656, 4242),
}
FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    "jpg": ("JPEG", {"quality": 90}),
    "png": ("PNG", {"compress_level": 1}),
    "webp": ("WEBP", {"quality": 90, "method": 0}),
}
REENCODED = ("cat-cat.webp", "dog-dog.webp", "other-alpaca.webp")
"""Photos re-encoded at every size and format by default (the cat is the models' most sensitive photo)."""
LIMITS = imaging.ImageLimits(max_bytes=1 << 30, max_pixels=100_000_000)


def bundled_photos(folder: Path = PHOTOS) -> dict[str, bytes]:
    """file name -> bytes of every photo in the manifest."""
    with (folder / "MANIFEST.csv").open() as f:
        return {row["file"]: (folder / row["file"]).read_bytes() for row in csv.DictReader(f)}


def reencoded(
    photos: Iterable[str] = REENCODED,
    sizes: Iterable[str] = tuple(SIZES),
    formats: Iterable[str] = tuple(FORMATS),
    cache: Path | None = None,
    folder: Path = PHOTOS,
) -> dict[str, bytes]:
    """'<photo>@<size>.<ext>' -> bytes: the photo resized (bicubic, landscape or portrait as the original) and
    encoded. Cached in `cache` under a name that includes the source's hash."""
    cache = cache or Path(tempfile.gettempdir()) / "catdog-answer-images"
    cache.mkdir(parents=True, exist_ok=True)
    found: dict[str, bytes] = {}
    for photo in photos:
        source = (folder / photo).read_bytes()
        digest = hashlib.sha256(source).hexdigest()[:12]
        image: Image.Image | None = None
        for size_name in sizes:
            for ext in formats:
                name = f"{photo}@{size_name}.{ext}"
                path = cache / f"{digest}-{name}"
                if not path.exists():
                    if image is None:
                        image = Image.open(io.BytesIO(source)).convert("RGB")
                    w, h = SIZES[size_name]
                    if image.width < image.height:
                        w, h = h, w
                    fmt, options = FORMATS[ext]
                    buffer = io.BytesIO()
                    image.resize((w, h), Image.Resampling.BICUBIC).save(buffer, fmt, **options)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_bytes(buffer.getvalue())
                    tmp.replace(path)  # a concurrent or interrupted run never sees half a file
                found[name] = path.read_bytes()
    return found


def reference_tensor(data: bytes, spec: Preprocessing, size: InputSpec) -> np.ndarray:
    """The slow, obviously-correct preprocessing: full decode, upright, RGB, the card's resize of the whole
    image to the torchvision size (no reduced-scale decode, no box pre-shrink), centre crop, float64 normalise."""
    opened = Image.open(io.BytesIO(data))
    opened.load()
    image = imaging.to_rgb(ImageOps.exif_transpose(opened) or opened)
    w, h = imaging.resize_target(image.width, image.height, spec, size)
    resample = Image.Resampling.BILINEAR if spec.interpolation == "bilinear" else Image.Resampling.BICUBIC
    image = image.resize((w, h), resample, reducing_gap=None)
    left, top = round((w - size.width) / 2.0), round((h - size.height) / 2.0)
    image = image.crop((left, top, left + size.width, top + size.height))
    pixels = np.asarray(image, dtype=np.float64)
    normalised = (pixels - np.asarray(spec.mean)) / np.asarray(spec.std)
    tensor: np.ndarray = normalised.transpose(2, 0, 1).astype(np.float32)
    return tensor


@dataclass
class ModelReport:
    model: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per image

    @property
    def max_dp(self) -> float:
        return max((r["dp"] for r in self.rows), default=0.0)

    @property
    def median_dp(self) -> float:
        return statistics.median(r["dp"] for r in self.rows) if self.rows else 0.0

    @property
    def label_changes(self) -> list[str]:
        return [r["image"] for r in self.rows if r["label"] != r["reference_label"]]

    @property
    def over_budget(self) -> list[str]:
        return [f"{r['image']}: {r['dp']:.4f}" for r in self.rows if r["dp"] > BUDGET]


def model_dirs(root: Path = REPO_ROOT / "models") -> list[Path]:
    return sorted(p.parent for p in root.glob("*/model.json") if (p.parent / "model.onnx").exists())


def compare(
    folder: Path,
    images: dict[str, bytes],
    fast: Callable[[bytes, Preprocessing, InputSpec], np.ndarray] | None = None,
) -> ModelReport:
    """Run the model on the fast and the reference tensors of every image; one row per image."""
    import onnxruntime as ort

    card = ModelCard.load(folder / "model.json")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(folder / card.onnx.file), options, providers=["CPUExecutionProvider"])
    spec, size = card.preprocessing, card.input
    fast = fast or (lambda data, p, s: imaging.load_tensor(data, p, s, LIMITS)[0])
    is_logits = card.output.kind == "logits"
    report = ModelReport(card.name)
    for name in sorted(images):
        data = images[name]
        batch = np.stack([fast(data, spec, size), reference_tensor(data, spec, size)])
        rows = session.run([card.output.name] if card.output.name else None, {card.input.name: batch})[0]
        probs = softmax(rows) if is_logits else rows
        ours = decide(rows[0], card.labels, is_logits=is_logits, decision=card.decision)
        ref = decide(rows[1], card.labels, is_logits=is_logits, decision=card.decision)
        report.rows.append(
            {
                "image": name,
                "dp": float(np.abs(probs[0] - probs[1]).max()),
                "label": ours.label,
                "reference_label": ref.label,
                "confidence": round(ours.confidence, 4),
            }
        )
    return report


STEPS = ("checks", "decode", "resample", "normalise")


def step_times(data: bytes, spec: Preprocessing, size: InputSpec, repeat: int = 5) -> dict[str, float]:
    """Median ms of each step of load_tensor's path for one image (the same calls, timed one by one), the
    whole load_tensor, and the reference preprocessing."""
    samples: dict[str, list[float]] = {step: [] for step in (*STEPS, "load_tensor", "reference")}
    for _ in range(repeat):
        t0 = time.perf_counter()
        source, fmt, width, height = imaging._open(data, LIMITS)
        t1 = time.perf_counter()
        orientation = imaging._orientation(source) if fmt == "JPEG" else 1
        box = imaging._upright_box(width, height, orientation, spec, size)
        eighths = imaging._jpeg_eighths(box, size) if fmt == "JPEG" else 8
        stored = imaging._decode_jpeg(data, eighths) if fmt == "JPEG" and source.mode in ("RGB", "L") else None
        if stored is None:
            if eighths < 8:
                source.draft("RGB", (-(-width * eighths // 8), -(-height * eighths // 8)))
            source.load()
            if fmt != "JPEG":
                orientation = imaging._orientation(source)
            stored = imaging.to_rgb(source)
        t2 = time.perf_counter()
        box = imaging._stored_box(
            imaging._upright_box(width, height, orientation, spec, size), orientation, width, height
        )
        scale = 1.0 if stored.size == (width, height) else imaging._scale_of(width, height, *stored.size)
        pixels = imaging._resample(stored, box, scale, orientation, spec, size)
        t3 = time.perf_counter()
        imaging.normalise(pixels, spec)
        t4 = time.perf_counter()
        imaging.load_tensor(data, spec, size, LIMITS)
        t5 = time.perf_counter()
        reference_tensor(data, spec, size)
        t6 = time.perf_counter()
        for step, (a, b) in zip(
            (*STEPS, "load_tensor", "reference"),
            ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6)),
            strict=True,
        ):
            samples[step].append((b - a) * 1000)
    return {step: round(statistics.median(values), 3) for step, values in samples.items()}


def run(args: argparse.Namespace) -> dict[str, Any]:
    images = bundled_photos()
    images.update(reencoded(args.photos, args.sizes, args.formats, args.cache))
    results: dict[str, Any] = {"budget": BUDGET, "images": len(images), "models": {}, "timing": {}}
    for folder in model_dirs(args.model_dir):
        report = compare(folder, images)
        results["models"][report.model] = {
            "max_dp": round(report.max_dp, 5),
            "median_dp": round(report.median_dp, 6),
            "label_changes": report.label_changes,
            "over_budget": report.over_budget,
            "worst": sorted(report.rows, key=lambda r: -r["dp"])[:5],
            "rows": report.rows,
        }
        card = ModelCard.load(folder / "model.json")
        timing: dict[str, dict[str, float]] = {}
        for name in sorted(images):
            if name in args.time_images or ("@" in name and name.split("@")[0] == args.photos[0]):
                timing[name] = step_times(images[name], card.preprocessing, card.input, args.repeat)
        results["timing"][report.model] = timing
        print(f"{report.model}: max |dp| {report.max_dp:.4f}, changes {report.label_changes}", flush=True)
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Answer budget: every probability within {results['budget']} of the reference, no label change; "
        f"{results['images']} images.",
        "",
        "| model | max abs dp | median abs dp | label changes | over budget | worst images |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for model, m in results["models"].items():
        worst = ", ".join(f"{w['image']} {w['dp']:.4f}" for w in m["worst"][:3])
        lines.append(
            f"| {model} | {m['max_dp']:.4f} | {m['median_dp']:.5f} | {len(m['label_changes'])} "
            f"| {', '.join(m['over_budget']) or 'none'} | {worst} |"
        )
    lines += ["", "ms per image per step (median; one core):", ""]
    lines += ["| model | image | " + " | ".join((*STEPS, "load_tensor", "reference")) + " |"]
    lines += ["| --- | --- |" + " ---: |" * (len(STEPS) + 2)]
    for model, timing in results["timing"].items():
        for name, steps in timing.items():
            cells = " | ".join(f"{steps[s]:.2f}" for s in (*STEPS, "load_tensor", "reference"))
            lines.append(f"| {model} | {name} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--photos", nargs="+", default=list(REENCODED), help="bundled photos to re-encode")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--formats", nargs="+", default=list(FORMATS), choices=list(FORMATS))
    parser.add_argument("--cache", type=Path, default=None, help="re-encodings cache (default: a temp folder)")
    parser.add_argument("--time-images", nargs="*", default=["dog-dog.jpg", "other-alpaca.webp"])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per image; the median counts")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "artifacts" / "answers")
    args = parser.parse_args(argv)
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "answers.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.out / "answers.md").write_text(table)
    print(table)
    over = any(m["over_budget"] or m["label_changes"] for m in results["models"].values())
    return 1 if over else 0


if __name__ == "__main__":
    raise SystemExit(main())
