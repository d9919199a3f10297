"""postprocess: softmax, argmax, and the card's fallback-label rule."""

from __future__ import annotations

import numpy as np
import pytest

from service.dataplane.card import Decision
from service.dataplane.postprocess import decide, softmax

LABELS = ["cat", "dog", "other"]


def test_softmax_is_stable_and_normalised() -> None:
    probs = softmax(np.array([1000.0, 1000.0, -1000.0]))
    np.testing.assert_allclose(probs, [0.5, 0.5, 0.0], atol=1e-12)


def test_argmax_without_a_decision_rule() -> None:
    answer = decide(np.array([0.2, 0.7, 0.1], np.float32), LABELS, is_logits=False, decision=None)
    assert (answer.label, answer.confidence) == ("dog", pytest.approx(0.7))
    assert answer.probabilities == pytest.approx({"cat": 0.2, "dog": 0.7, "other": 0.1})


def test_logits_are_softmaxed() -> None:
    answer = decide(np.array([2.0, 0.0], np.float32), ["cat", "dog"], is_logits=True, decision=None)
    assert answer.label == "cat"
    assert answer.confidence == pytest.approx(np.exp(2) / (np.exp(2) + 1))


@pytest.mark.parametrize(
    ("probs", "label"),
    [
        ([0.30, 0.25, 0.45], "cat"),  # cat+dog = 0.55 >= 0.5: best of cat/dog even though "other" is the argmax
        ([0.20, 0.25, 0.55], "other"),  # cat+dog = 0.45 < 0.5
        ([0.05, 0.00, 0.95], "other"),
    ],
)
def test_fallback_rule(probs: list[float], label: str) -> None:
    rule = Decision(fallback_label="other", min_mass=0.5)
    answer = decide(np.array(probs, np.float32), LABELS, is_logits=False, decision=rule)
    assert answer.label == label
    assert answer.confidence == pytest.approx(probs[LABELS.index(label)])


def test_bad_outputs_raise() -> None:
    with pytest.raises(ValueError, match="shape"):
        decide(np.array([0.5, 0.5]), LABELS, is_logits=False, decision=None)
    with pytest.raises(ValueError, match="finite"):
        decide(np.array([np.nan, 0.5, 0.5]), LABELS, is_logits=False, decision=None)
