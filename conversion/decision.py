"""The card's decision rule (`decision.fallback_label` / `min_mass`) and how its threshold is chosen.

The rule itself is the service's (docs/architecture.md): the fallback label wins when the summed probability
of all other labels is below `min_mass`, else the most probable non-fallback label wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from service.dataplane import postprocess
from service.dataplane.card import Decision


def decide(probabilities: np.ndarray, labels: Sequence[str], decision: Mapping[str, Any] | None) -> list[str]:
    """One label per row of `probabilities` ([N, K]), by the service's own rule (service.dataplane.postprocess)."""
    rule = Decision.model_validate(decision) if decision else None
    return [postprocess.decide(row, list(labels), is_logits=False, decision=rule).label for row in probabilities]


def balanced_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Mean per-class recall, so 42 "other" photos do not drown 3 cats and 3 dogs."""
    recalls = []
    for label in sorted(set(truth)):
        rows = [p == t for t, p in zip(truth, predicted, strict=True) if t == label]
        recalls.append(sum(rows) / len(rows))
    return sum(recalls) / len(recalls)


def choose_min_mass(
    probabilities: np.ndarray, labels: Sequence[str], truth: Sequence[str], fallback_label: str
) -> dict[str, Any]:
    """The `min_mass` whose final answers score the best balanced accuracy on labelled photos.

    Candidates are the midpoints between consecutive measured masses; among equally good ones the middle of the
    widest gap wins (rounded to two decimals), so a small shift in one photo's mass does not flip its answer.
    """
    keep = [i for i, label in enumerate(labels) if label != fallback_label]
    mass = probabilities[:, keep].sum(1)
    values = np.unique(np.concatenate([[0.0, 1.0], mass]))
    candidates = (values[:-1] + values[1:]) / 2
    gaps = values[1:] - values[:-1]

    def score(threshold: float) -> float:
        rule = {"fallback_label": fallback_label, "min_mass": threshold}
        return balanced_accuracy(truth, decide(probabilities, labels, rule))

    scores = np.array([score(t) for t in candidates])
    best = np.flatnonzero(scores == scores.max())
    chosen = int(best[np.argmax(gaps[best])])
    threshold = round(float(candidates[chosen]), 2)
    return {
        "min_mass": threshold,
        "balanced_accuracy_on_photos": round(score(threshold), 4),
        "between_measured_masses": [round(float(values[chosen]), 4), round(float(values[chosen + 1]), 4)],
    }
