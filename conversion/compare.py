"""`python -m conversion compare-heads`: heads x backbones, judged by leave-one-out on the bundled photos.

Every parameter of every head (threshold, temperature, gate weight, logistic weights) is chosen on the other
photos only; each photo's answer is scored as held out. The figures go to docs/models.md.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from conversion.architectures import efficientnet_lite_imagenet, get_architecture, membership_matrix
from conversion.card import serving_card
from conversion.decision import choose_min_mass, decide
from conversion.heads import CROPS, backbone_views, fit_logistic, log_masses, predict_logistic
from conversion.heldout import expected_calibration_error, leave_one_out
from conversion.photos import LabelledImage

log = logging.getLogger(__name__)

LABELS = ("cat", "dog", "other")
FALLBACK = "other"
TEMPERATURES = np.exp(np.linspace(np.log(0.3), np.log(3.0), 25))
GATE_WEIGHTS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)
L2 = 1e-3


class PooledAndLogits(nn.Module):
    """[N, 1280 + 1000]: the backbone's pooled features, then its ImageNet logits (one forward pass)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net: Any = self.backbone
        pooled = net._avg_pooling(net.extract_features(x)).flatten(1)
        return torch.cat([pooled, net._fc(pooled)], dim=1)


def grouped(logits: np.ndarray, temperature: float = 1.0, gate: float = 1.0) -> np.ndarray:
    """[..., 3] (cat, dog, other): cat and dog mass over animal mass + `gate` x no-animal mass (1: plain sums)."""
    x = logits.astype(np.float64) / temperature
    e = np.exp(x - x.max(-1, keepdims=True))
    m = (e / e.sum(-1, keepdims=True)) @ membership_matrix(x.shape[-1]).astype(np.float64)
    denominator = m[..., 0] + m[..., 1] + m[..., 2] + gate * m[..., 3]
    cat, dog = m[..., 0] / denominator, m[..., 1] / denominator
    return np.stack([cat, dog, 1 - cat - dog], -1)


def _nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1))))


def _threshold(probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    chosen = choose_min_mass(probs, LABELS, [LABELS[k] for k in y], FALLBACK)
    return {"fallback_label": FALLBACK, "min_mass": chosen["min_mass"]}


RuleHead = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, dict[str, Any] | None]]
"""(centre logits [N, 1000], truth [N], held-out index) -> (its probabilities, decision rule or None)."""


def _sums(logits: np.ndarray, y: np.ndarray, i: int) -> tuple[np.ndarray, dict[str, Any] | None]:
    probs = grouped(logits)
    keep = np.arange(len(y)) != i
    return probs[i], _threshold(probs[keep], y[keep])


def _sums_temperature(logits: np.ndarray, y: np.ndarray, i: int) -> tuple[np.ndarray, dict[str, Any] | None]:
    keep = np.arange(len(y)) != i
    t = min(TEMPERATURES, key=lambda t: _nll(grouped(logits[keep], t), y[keep]))
    probs = grouped(logits, t)
    return probs[i], _threshold(probs[keep], y[keep])


def _animal_gate(logits: np.ndarray, y: np.ndarray, i: int) -> tuple[np.ndarray, dict[str, Any] | None]:
    keep = np.arange(len(y)) != i
    t, g = min(
        ((t, g) for t in TEMPERATURES for g in GATE_WEIGHTS),
        key=lambda tg: _nll(grouped(logits[keep], *tg), y[keep]),
    )
    probs = grouped(logits, t, g)
    return probs[i], _threshold(probs[keep], y[keep])


RULE_HEADS: dict[str, RuleHead] = {
    "cat/dog mass sums + min-mass rule (1.0.0)": _sums,
    "sums + temperature + min-mass": _sums_temperature,
    "animal renormalisation + no-animal gate + temperature + min-mass": _animal_gate,
}


def _logistic(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    w, b = fit_logistic(x, y, l2=L2)
    return lambda rows: predict_logistic(rows, w, b)


def score(
    files: Sequence[str], truth: Sequence[str], probs: np.ndarray, rules: Sequence[dict[str, Any] | None]
) -> dict[str, Any]:
    """Held-out answers (by each photo's own fold rule), accuracy per class, ECE, weakest full-size pet."""
    answers = [decide(p[None], LABELS, r)[0] for p, r in zip(probs, rules, strict=True)]
    confidence = [float(p[LABELS.index(a)]) for p, a in zip(probs, answers, strict=True)]
    correct = [a == t for a, t in zip(answers, truth, strict=True)]
    per_class = {
        label: f"{sum(c for c, t in zip(correct, truth, strict=True) if t == label)}/{truth.count(label)}"
        for label in LABELS
    }
    pets = [k for k, f in enumerate(files) if truth[k] != FALLBACK and "cifar" not in f]
    return {
        "correct": f"{sum(correct)}/{len(correct)}",
        "per_class": per_class,
        "ece": round(expected_calibration_error(confidence, correct), 4),
        "weakest_full_size_pet": round(min(confidence[k] if correct[k] else 0.0 for k in pets), 4),
        "answers": {f: [a, round(c, 4)] for f, a, c in zip(files, answers, confidence, strict=True)},
    }


def compare_backbone(variant: int, photos: Sequence[LabelledImage], crops: int = CROPS) -> dict[str, Any]:
    """All heads on one Lite backbone; returns {head: score}."""
    arch = get_architecture(f"efficientnet_lite{variant}_masslogistic")
    card = serving_card(name="compare", version="0", arch=arch, labels=LABELS, image_size=arch.image_size)
    module = PooledAndLogits(efficientnet_lite_imagenet(variant))
    views = backbone_views(module, photos, card, crops=crops)
    pooled, logits = views[..., :-1000], views[..., -1000:]
    files = [p.path.name for p in photos]
    truth = [p.label for p in photos]
    y = np.array([LABELS.index(t) for t in truth])
    results: dict[str, Any] = {}
    for name, head in RULE_HEADS.items():
        rows = [head(logits[:, 0], y, i) for i in range(len(y))]
        results[name] = score(files, truth, np.stack([r[0] for r in rows]), [r[1] for r in rows])
        log.info("lite%d %s: %s", variant, name, {k: v for k, v in results[name].items() if k != "answers"})
    for name, features in (
        ("logistic on the 4 log-masses (2.0.0)", log_masses(logits)),
        ("logistic on the pooled features", pooled),
    ):
        probs = leave_one_out(features, y.tolist(), _logistic)
        results[name] = score(files, truth, probs, [None] * len(y))
        log.info("lite%d %s: %s", variant, name, {k: v for k, v in results[name].items() if k != "answers"})
    return results
