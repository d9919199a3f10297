"""The cat / dog / other head and the held-out machinery: small, exact cases that can fail."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conversion.architectures import MassLogistic, membership_matrix
from conversion.heads import fit_logistic, log_masses, predict_logistic
from conversion.heldout import expected_calibration_error, leave_one_out, report, split, summarise
from conversion.photos import read_manifest
from tests.conftest import PHOTOS

pytestmark = pytest.mark.torch


def test_every_imagenet_class_is_in_exactly_one_group() -> None:
    m = membership_matrix()
    assert m.shape == (1000, 4)
    assert (m.sum(1) == 1).all()
    assert m[:, 0].sum() == 5  # domestic cats 281-285
    assert m[:, 1].sum() == 118  # dogs 151-268
    assert m[:, 2].sum() == 398 - 5 - 118  # every other animal
    assert m[285, 0] == 1 and m[286, 2] == 1 and m[397, 2] == 1 and m[398, 3] == 1


def test_graph_head_matches_the_numpy_features_and_fit() -> None:
    """What the ONNX graph computes (MassLogistic) is what the fit was scored on (log_masses + predict)."""
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (6, 1000)).astype(np.float32)
    w, b = rng.normal(size=(3, 4)), rng.normal(size=3)

    class Fixed(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    head = MassLogistic(Fixed())
    head.head.weight.data = torch.tensor(w, dtype=torch.float32)
    head.head.bias.data = torch.tensor(b, dtype=torch.float32)
    with torch.no_grad():
        graph = head(torch.from_numpy(logits)).numpy()
    np.testing.assert_allclose(graph, predict_logistic(log_masses(logits), w, b), atol=1e-5)


def test_logistic_fit_separates_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(c, 0.3, (10, 2)) for c in (-2, 0, 2)])
    y = np.repeat([0, 1, 2], 10)
    w1, b1 = fit_logistic(x, y, l2=1e-3)
    w2, b2 = fit_logistic(x, y, l2=1e-3)
    assert (w1 == w2).all() and (b1 == b2).all()
    assert (predict_logistic(x, w1, b1).argmax(1) == y).all()


def test_leave_one_out_never_fits_on_the_photo_it_answers() -> None:
    seen: list[int] = []
    features = np.arange(4 * 2 * 1, dtype=np.float64).reshape(4, 2, 1)

    def fit(x: np.ndarray, y: np.ndarray):  # type: ignore[no-untyped-def]
        seen.append(len(x))
        held = set(range(8)) - {int(v) for v in x[:, 0]}
        return lambda rows: np.array([[1.0, 0.0, 0.0]]) if int(rows[0, 0]) in held else np.zeros((1, 3))

    probs = leave_one_out(features, [0, 1, 2, 0], fit)
    assert seen == [6, 6, 6, 6]  # 3 photos x 2 views each time
    assert (probs[:, 0] == 1).all()  # the answered row was always one of the left-out views


def test_leave_one_out_answers_with_the_rows_given_and_fits_on_the_features() -> None:
    """INT8's held-out figures: fold heads fitted on FP32's features, each photo answered by its INT8 row."""
    features = np.zeros((3, 2, 1))
    rows = np.array([[10.0], [20.0], [30.0]])
    fitted_on: list[set[float]] = []

    def fit(x: np.ndarray, y: np.ndarray):  # type: ignore[no-untyped-def]
        fitted_on.append({float(v) for v in x[:, 0]})
        return lambda r: np.array([[float(r[0, 0]), 0.0, 0.0]])

    probs = leave_one_out(features, [0, 1, 2], fit, rows=rows)
    assert probs[:, 0].tolist() == [10.0, 20.0, 30.0]
    assert fitted_on == [{0.0}] * 3  # never on a row


def test_ece_is_zero_when_confidence_matches_accuracy_and_counts_the_gap() -> None:
    assert expected_calibration_error([1.0, 1.0], [True, True]) == 0
    assert expected_calibration_error([0.75] * 4, [True, True, True, False]) == pytest.approx(0)
    assert expected_calibration_error([0.9, 0.9], [False, False]) == pytest.approx(0.9)


def test_report_round_trips_and_split_keeps_classes_apart() -> None:
    section = report(["a", "b", "c"], ["cat", "dog", "other"], ["cat", "other", "other"], [0.9, 0.6, 0.8], "m")
    assert section["correct"] == 2
    assert section["per_class"]["dog"] == {"correct": 0, "total": 1}
    assert summarise(section) == section
    photos = read_manifest(PHOTOS)
    selection, heldout = split(photos)
    assert {p.path for p in selection}.isdisjoint({p.path for p in heldout})
    assert len(selection) + len(heldout) == len(photos)
    for label in ("cat", "dog", "other"):
        assert any(p.label == label for p in heldout), label
        assert any(p.label == label for p in selection), label


def test_grouped_heads_of_the_comparison() -> None:
    """gate 1 is 1.0.0's plain cat / dog sums; gate 0 renormalises over animals, so objects stop diluting a pet."""
    from conversion.compare import grouped

    logits = np.full(1000, -30.0)
    logits[281] = np.log(0.6)  # tabby cat
    logits[999] = np.log(0.4)  # an object in the scene
    plain = grouped(logits[None])[0]
    assert plain == pytest.approx([0.6, 0.0, 0.4], abs=1e-6)
    renormalised = grouped(logits[None], gate=0.0)[0]
    assert renormalised == pytest.approx([1.0, 0.0, 0.0], abs=1e-6)
    assert grouped(logits[None], temperature=2.0)[0][0] < 0.6  # a higher temperature flattens
