"""Accuracy of an ONNX model on labelled photos, through the service's preprocessing and decision rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from conversion.decision import decide
from conversion.onnxrun import run_onnx, session
from conversion.photos import LabelledImage
from conversion.preprocess import preprocess_batch


@dataclass(frozen=True)
class Evaluation:
    """Per-photo answers of one model; `to_card` gives counts per true class."""

    files: list[str]
    truth: list[str]
    predicted: list[str]
    probabilities: np.ndarray

    def to_card(self, dataset: str) -> dict[str, Any]:
        per_class: dict[str, dict[str, int]] = {}
        for t, p in zip(self.truth, self.predicted, strict=True):
            entry = per_class.setdefault(t, {"correct": 0, "total": 0})
            entry["total"] += 1
            entry["correct"] += int(t == p)
        correct = sum(e["correct"] for e in per_class.values())
        return {
            "dataset": dataset,
            "correct": correct,
            "total": len(self.truth),
            "per_class": dict(sorted(per_class.items())),
            "errors": {f: p for f, t, p in zip(self.files, self.truth, self.predicted, strict=True) if t != p},
        }


def map_truth(label: str, model_labels: Sequence[str]) -> str:
    """A photo's label as the model can express it: a 2-class cat/dog model cannot say "other"."""
    return label if label in model_labels else "(not a model label)"


def probabilities(onnx_path: Path, card: Mapping[str, Any], images: Sequence[LabelledImage]) -> np.ndarray:
    """[N, K] probabilities of the model of `card` on `images`, preprocessed exactly as served."""
    batch = preprocess_batch([i.path for i in images], card)
    out = run_onnx(session(onnx_path), batch)
    if card["output"]["kind"] == "logits":
        exp = np.exp(out - out.max(1, keepdims=True))
        out = exp / exp.sum(1, keepdims=True)
    return out


def judge(probs: np.ndarray, card: Mapping[str, Any], images: Sequence[LabelledImage]) -> Evaluation:
    """Apply the card's decision rule to `probs` and pair each answer with the photo's true label."""
    labels = list(card["labels"])
    return Evaluation(
        files=[i.path.name for i in images],
        truth=[map_truth(i.label, labels) for i in images],
        predicted=decide(probs, labels, card.get("decision")),
        probabilities=probs,
    )


def evaluate(onnx_path: Path, card: Mapping[str, Any], images: Sequence[LabelledImage]) -> Evaluation:
    """Run the model of `card` on `images` exactly as served (preprocessing, output kind, decision rule)."""
    return judge(probabilities(onnx_path, card, images), card, images)
