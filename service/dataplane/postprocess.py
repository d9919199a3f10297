"""Model output -> the answer: probabilities, label and confidence, by the card's decision rule."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.dataplane.card import Decision


@dataclass(frozen=True, slots=True)
class Answer:
    label: str
    confidence: float
    probabilities: dict[str, float]


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)  # type: ignore[no-any-return]


def decide(row: np.ndarray, labels: list[str], *, is_logits: bool, decision: Decision | None) -> Answer:
    """One output row -> Answer. Non-finite outputs raise ValueError (a model fault, not the client's)."""
    if row.shape != (len(labels),):
        raise ValueError(f"model output has shape {row.shape}, expected ({len(labels)},)")
    probs = softmax(row) if is_logits else row
    if not np.all(np.isfinite(probs)):
        raise ValueError("model output is not finite")
    probabilities = {label: float(p) for label, p in zip(labels, probs, strict=True)}
    if decision is None:
        best = int(np.argmax(probs))
        return Answer(labels[best], float(probs[best]), probabilities)
    fallback = labels.index(decision.fallback_label)
    known = [i for i in range(len(labels)) if i != fallback]
    mass = float(sum(probs[i] for i in known))
    if mass < decision.min_mass:
        return Answer(labels[fallback], float(probs[fallback]), probabilities)
    best = max(known, key=lambda i: float(probs[i]))
    return Answer(labels[best], float(probs[best]), probabilities)
