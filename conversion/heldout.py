"""Figures from photos a model never saw: leave-one-out for fitted heads, a fixed split for trained models.

Numpy only (no PyTorch), so the shipped-model tests can recompute the cards from it.

With 3 full-size cats and 2 full-size dogs in the bundle, any fixed split leaves one or two pets to judge by, so
the `pretrained` head is judged by leave-one-out: each photo is answered by a head fitted on all the others
(all their augmented crops), never on itself. `scratch` costs minutes per training run, so it is trained on the
selection half of a fixed split (`split`) and judged on the held-out half.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from conversion.photos import LabelledImage

ECE_BINS = 10

Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]
"""(features [M, F], labels [M]) -> predict ([N, F] -> [N, C] probabilities)."""


def split(photos: Sequence[LabelledImage]) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """(selection, held-out): in file-name order within each class, every second photo is held out."""
    selection: list[LabelledImage] = []
    heldout: list[LabelledImage] = []
    for label in sorted({p.label for p in photos}):
        for i, photo in enumerate(sorted((p for p in photos if p.label == label), key=lambda p: p.path.name)):
            (heldout if i % 2 else selection).append(photo)
    return selection, heldout


def leave_one_out(features: np.ndarray, truth: Sequence[int], fit: Fit, rows: np.ndarray | None = None) -> np.ndarray:
    """[N, C] probabilities: photo i's centre view (view 0 of `features` [N, views, F], or `rows[i]` when given:
    the same photo through another file, such as INT8's) scored by a head fitted on every view of the others."""
    y = np.asarray(truth)
    n, views = features.shape[:2]
    scored = features[:, 0] if rows is None else rows
    out = []
    for i in range(n):
        keep = np.arange(n) != i
        predict = fit(features[keep].reshape(-1, features.shape[-1]), np.repeat(y[keep], views))
        out.append(predict(scored[i : i + 1])[0])
    return np.stack(out)


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> float:
    """Top-label ECE: |accuracy - mean confidence| per equal-width confidence bin, weighted by bin size."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    total = 0.0
    for k in range(bins):
        in_bin = (conf > k / bins) & (conf <= (k + 1) / bins)
        if in_bin.any():
            total += in_bin.mean() * abs(conf[in_bin].mean() - hit[in_bin].mean())
    return float(total)


def report(
    files: Sequence[str], truth: Sequence[str], answers: Sequence[str], confidence: Sequence[float], method: str
) -> dict[str, Any]:
    """The card's `heldout` section: counts per true class, ECE, and every photo's answer and confidence."""
    per_class: dict[str, dict[str, int]] = {}
    for t, a in zip(truth, answers, strict=True):
        entry = per_class.setdefault(t, {"correct": 0, "total": 0})
        entry["total"] += 1
        entry["correct"] += int(t == a)
    correct = [t == a for t, a in zip(truth, answers, strict=True)]
    return {
        "method": method,
        "correct": sum(correct),
        "total": len(correct),
        "per_class": dict(sorted(per_class.items())),
        "ece": round(expected_calibration_error(confidence, correct), 4),
        "ece_bins": ECE_BINS,
        "photos": {
            f: {"truth": t, "answer": a, "confidence": round(float(c), 4)}
            for f, t, a, c in zip(files, truth, answers, confidence, strict=True)
        },
    }


def summarise(section: Mapping[str, Any]) -> dict[str, Any]:
    """Recompute counts and ECE from a `heldout` section's per-photo rows (what the tests check)."""
    rows = section["photos"]
    return report(
        list(rows),
        [r["truth"] for r in rows.values()],
        [r["answer"] for r in rows.values()],
        [r["confidence"] for r in rows.values()],
        section["method"],
    )
