"""Build the two models that ship in `models/`: `pretrained` (Lite0 + cat/dog/other head) and `scratch`.

Both are rebuilt from packaged weights and the bundled photos only, so `build-reference` run again on the
same machine reproduces the cards' figures (training timings are logged, not carded, for that reason).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from conversion.card import ONNX_FILE, onnx_section, write_card
from conversion.checkpoints import load_checkpoint
from conversion.convert import ConversionSpec, convert
from conversion.evaluate import evaluate
from conversion.photos import LabelledImage
from conversion.quantize import quantize
from conversion.train import TrainConfig, train

log = logging.getLogger(__name__)

TEACHER_ARCH = "efficientnet_lite0_catdog"


def build_pretrained(models_dir: Path, photos: Sequence[LabelledImage], work_dir: Path) -> dict[str, Any]:
    """models/pretrained, with the INT8 comparison in its card (and models/pretrained-int8 if it passes)."""
    loaded = load_checkpoint(None, arch=TEACHER_ARCH)
    out = models_dir / "pretrained"
    spec = ConversionSpec(
        name="pretrained", version="1.0.0", labels=loaded.labels, image_size=loaded.image_size, decision="auto"
    )
    card = convert(loaded.module, loaded.arch, spec, out, photos)

    work_dir.mkdir(parents=True, exist_ok=True)
    int8_path = work_dir / "pretrained-int8.onnx"
    report = quantize(out / ONNX_FILE, int8_path, card, photos)
    log.info(
        "INT8: %.1f MB -> %.1f MB, %.2f ms -> %.2f ms per image (1 thread), answers changed: %s, max |diff| %.3f",
        report.fp32_bytes / 1e6,
        report.int8_bytes / 1e6,
        report.fp32_ms,
        report.int8_ms,
        report.changed_answers,
        report.max_abs_diff,
    )
    card["quantization"] = report.to_card()
    write_card(out, card)
    if report.acceptable:
        _ship_int8(models_dir / "pretrained-int8", int8_path, card, photos)
    return card


def _ship_int8(folder: Path, int8_path: Path, fp32_card: dict[str, Any], photos: Sequence[LabelledImage]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(int8_path, folder / ONNX_FILE)
    card = {**fp32_card, "name": folder.name, "description": fp32_card["description"] + " (INT8)"}
    card["onnx"] = onnx_section(folder, fp32_card["onnx"]["opset"])
    card["accuracy"] = evaluate(folder / ONNX_FILE, card, photos).to_card(fp32_card["accuracy"]["dataset"])
    card.pop("parity", None)
    write_card(folder, card)


def build_scratch(
    models_dir: Path,
    photos_dir: Path,
    photos: Sequence[LabelledImage],
    work_dir: Path,
    steps: int,
    reuse_checkpoint: bool = False,
) -> dict[str, Any]:
    """Train EfficientNetV2-B2 from random init (distilled from models/pretrained, built first), then convert."""
    checkpoint = work_dir / "scratch.pt"
    teacher = models_dir / "pretrained"
    config = TrainConfig(data=photos_dir, out=checkpoint, teacher=teacher, steps=steps)
    if reuse_checkpoint and checkpoint.is_file():
        trained = torch.load(checkpoint, map_location="cpu", weights_only=True)
    else:
        trained = train(config)
    log.info("scratch trained in %.0f s", trained["training_seconds"])
    loaded = load_checkpoint(checkpoint)
    spec = ConversionSpec(
        name="scratch",
        version="0.1.0",
        labels=loaded.labels,
        image_size=loaded.image_size,
        description="EfficientNetV2-B2 trained from scratch on the 48 bundled photos (weak: see the card)",
        provenance={
            "weights": "random initialisation, trained by `python -m conversion train` on the bundled photos, "
            "distilled from models/pretrained",
        },
        extra={
            "training": {
                **trained["training"],
                "data": f"data/images ({len(photos)} bundled photos)",
                "teacher": "models/pretrained (built just before)",
            },
            "caveat": "The accuracy figures are measured on the training photos themselves (no larger data set "
            "exists offline); they show memorisation, not generalisation. Retrain on a real data set.",
        },
    )
    return convert(loaded.module, loaded.arch, spec, models_dir / "scratch", photos)
