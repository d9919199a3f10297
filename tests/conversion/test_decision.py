"""The decision rule and how its threshold is chosen from measured photos."""

from __future__ import annotations

import numpy as np

from conversion.decision import balanced_accuracy, choose_min_mass, decide

LABELS = ["cat", "dog", "other"]


def test_decide_follows_the_card_rule() -> None:
    probs = np.array([[0.5, 0.2, 0.3], [0.2, 0.1, 0.7], [0.1, 0.35, 0.55]], np.float32)
    rule = {"fallback_label": "other", "min_mass": 0.4}
    assert decide(probs, LABELS, rule) == ["cat", "other", "dog"]
    assert decide(probs, LABELS, None) == ["cat", "other", "other"]


def test_threshold_sits_in_the_widest_gap_that_keeps_the_best_score() -> None:
    # cat+dog masses: targets 0.9, 0.8, 0.7; others 0.3, 0.05, 0.01 -> any threshold in (0.3, 0.7] is perfect.
    masses = [0.9, 0.8, 0.7, 0.3, 0.05, 0.01]
    probs = np.array([[m, 0.0, 1 - m] for m in masses], np.float32)
    truth = ["cat", "cat", "cat", "other", "other", "other"]
    chosen = choose_min_mass(probs, LABELS, truth, "other")
    assert chosen["min_mass"] == 0.5
    assert chosen["balanced_accuracy_on_photos"] == 1.0
    assert chosen["between_measured_masses"] == [0.3, 0.7]


def test_balanced_accuracy_weights_classes_equally() -> None:
    truth = ["cat"] + ["other"] * 9
    assert balanced_accuracy(truth, ["other"] * 10) == 0.5
