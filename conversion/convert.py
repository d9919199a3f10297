"""One conversion: build the module, export it, prove parity on real photos, measure it, write the card."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from conversion.architectures import Architecture
from conversion.card import ONNX_FILE, onnx_section, serving_card, write_card
from conversion.decision import choose_min_mass
from conversion.evaluate import judge, probabilities
from conversion.export import DEFAULT_OPSET, export_onnx
from conversion.parity import FP32_TOLERANCE, check_parity
from conversion.photos import LabelledImage
from conversion.preprocess import preprocess_batch

log = logging.getLogger(__name__)

FALLBACK_LABEL = "other"


@dataclass(frozen=True)
class ConversionSpec:
    """What to convert and how the result is named; `decision="auto"` measures the threshold on the photos."""

    name: str
    version: str
    labels: Sequence[str]
    image_size: int
    description: str | None = None
    decision: Mapping[str, Any] | str | None = None
    opset: int = DEFAULT_OPSET
    tolerance: float = FP32_TOLERANCE
    license: str | None = None
    provenance: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] | None = None


def convert(
    module: nn.Module, arch: Architecture, spec: ConversionSpec, out_dir: Path, photos: Sequence[LabelledImage]
) -> dict[str, Any]:
    """Write `out_dir/model.onnx` and `out_dir/model.json`; raises ParityError on mismatch.

    The graph is staged beside the target and moved into place only once everything passed, so a failed
    conversion never leaves a model.onnx that disagrees with the model.json next to it.
    """
    if spec.decision and FALLBACK_LABEL not in spec.labels:
        raise ValueError(f"a decision rule needs an {FALLBACK_LABEL!r} label; labels are {list(spec.labels)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    staged = out_dir / f".{ONNX_FILE}.staged"
    try:
        card = _convert_staged(module, arch, spec, staged, photos)
        staged.replace(out_dir / ONNX_FILE)
    finally:
        staged.unlink(missing_ok=True)
    card["onnx"] = onnx_section(out_dir, spec.opset)
    write_card(out_dir, card)
    return card


def _convert_staged(
    module: nn.Module, arch: Architecture, spec: ConversionSpec, onnx_path: Path, photos: Sequence[LabelledImage]
) -> dict[str, Any]:
    card = serving_card(
        name=spec.name,
        version=spec.version,
        arch=arch,
        labels=spec.labels,
        image_size=spec.image_size,
        description=spec.description,
    )
    export_onnx(
        module,
        onnx_path,
        height=spec.image_size,
        width=spec.image_size,
        output_name=card["output"]["name"],
        opset=spec.opset,
    )
    parity = check_parity(module, onnx_path, preprocess_batch([p.path for p in photos], card), spec.tolerance)
    log.info("parity: %s", parity)

    probs = probabilities(onnx_path, card, photos)
    decision_note: dict[str, Any] = {}
    if spec.decision == "auto":
        decision_note = _auto_decision(probs, card["labels"], photos)
        card["decision"] = {"fallback_label": FALLBACK_LABEL, "min_mass": decision_note["min_mass"]}
    elif isinstance(spec.decision, Mapping):
        card["decision"] = dict(spec.decision)
    evaluation = judge(probs, card, photos)

    card["license"] = spec.license or arch.license
    card["provenance"] = {"architecture": arch.name, **arch.provenance, **(spec.provenance or {})}
    card["export"] = {
        "exporter": "torch.onnx.export (TorchScript, dynamo=False), onnx.checker full check, strict shape inference",
        "torch": torch.__version__,
        "onnx": onnx.__version__,
    }
    card["parity"] = parity.to_card()
    card["accuracy"] = evaluation.to_card(
        f"{len(photos)} bundled photos (data/images/MANIFEST.csv), preprocessed as the service does"
    )
    if decision_note:
        card["decision_rule"] = decision_note
    card.update(spec.extra or {})
    return card


def _auto_decision(probs: np.ndarray, labels: Sequence[str], photos: Sequence[LabelledImage]) -> dict[str, Any]:
    """Choose `min_mass` from the measured non-"other" mass of each photo; returns the evidence too."""
    truth = [p.label for p in photos]
    chosen = choose_min_mass(probs, labels, truth, FALLBACK_LABEL)
    mass = probs[:, [i for i, label in enumerate(labels) if label != FALLBACK_LABEL]].sum(1)
    others = sorted(
        ((float(m), p.path.name) for m, p in zip(mass, photos, strict=True) if p.label == FALLBACK_LABEL), reverse=True
    )
    return {
        **chosen,
        "rule": "maximise balanced accuracy of the final answers; middle of the widest gap among ties",
        "measured_on": "the bundled photos (the same photos the accuracy figures use)",
        "target_mass": {
            p.path.name: round(float(m), 4) for p, m in zip(photos, mass, strict=True) if p.label != FALLBACK_LABEL
        },
        "other_mass": {
            "highest": {name: round(m, 4) for m, name in others[:3]},
            "median": round(float(np.median([m for m, _ in others])), 4),
            "below_0.1": f"{sum(m < 0.1 for m, _ in others)}/{len(others)}",
        },
    }
