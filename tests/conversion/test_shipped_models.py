"""The models in models/: intact files, cards the service accepts, and the answers their cards claim.

Needs only ONNX Runtime (no PyTorch): these are the figures users see in the cards and the README.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from conversion.evaluate import evaluate
from conversion.heldout import split, summarise
from conversion.onnxrun import session
from conversion.photos import read_manifest
from service.dataplane.card import ModelCard
from service.dataplane.repository import ServedModel
from service.rest.routes.models import describe
from tests.conftest import PHOTOS
from tests.support.server import REPO_ROOT

MODELS = REPO_ROOT / "models"
SHIPPED = ("pretrained", "scratch")
OLD_PRETRAINED_ECE = 0.0604
"""pretrained 1.0.0 (cat + dog mass sums, min-mass rule) by leave-one-out: `python -m conversion compare-heads`."""


def card_of(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((MODELS / name / "model.json").read_text())
    return data


@pytest.mark.parametrize("name", SHIPPED)
def test_file_matches_card_and_loads(name: str) -> None:
    card = card_of(name)
    typed = ModelCard.model_validate(card)
    onnx_path = MODELS / name / typed.onnx.file
    data = onnx_path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == typed.onnx.sha256
    assert len(data) == typed.onnx.size_bytes
    sess = session(onnx_path)
    (inp,) = sess.get_inputs()
    assert inp.name == typed.input.name
    assert inp.shape[1:] == [3, typed.input.height, typed.input.width]
    assert isinstance(inp.shape[0], str)  # dynamic batch axis
    assert sess.get_outputs()[0].name == typed.output.name
    assert typed.name == name
    assert card["parity"]["max_abs_diff"] <= card["parity"]["tolerance"] <= 1e-4


@pytest.mark.parametrize("name", SHIPPED)
def test_card_accuracy_is_what_the_model_does(name: str) -> None:
    card = card_of(name)
    measured = evaluate(MODELS / name / "model.onnx", card, read_manifest(PHOTOS)).to_card(card["accuracy"]["dataset"])
    assert measured == card["accuracy"]


FULL_SIZE_PETS = ("cat-cat.webp", "cat-kitten.webp", "cat-skimage-chelsea.png", "dog-dog.jpg", "dog-dog.webp")


def test_pretrained_says_cat_dog_and_other() -> None:
    """2.0.0's logistic head answers argmax; on its own fitting photos every full-size pet is sure and right."""
    card = card_of("pretrained")
    assert card["labels"] == ["cat", "dog", "other"]
    assert "decision" not in card
    result = evaluate(MODELS / "pretrained" / "model.onnx", card, read_manifest(PHOTOS))
    rows = zip(result.files, result.predicted, result.probabilities, strict=True)
    answers = {f: (a, float(row.max())) for f, a, row in rows}
    for name in FULL_SIZE_PETS:
        assert answers[name][0] == name.split("-")[0], name
        assert answers[name][1] >= 0.8, (name, answers[name])
    # The kitten with a ball of yarn: 1.0.0 said cat at 0.63.
    assert answers["cat-cat.webp"][1] >= 0.9


@pytest.mark.parametrize("name", SHIPPED)
def test_heldout_figures_add_up(name: str) -> None:
    """Counts and calibration error in the card's `heldout` section follow from its per-photo rows."""
    section = card_of(name)["heldout"]
    recomputed = summarise(section)
    # The card rounds confidences to 4 decimals after computing ECE from the full values.
    assert recomputed.pop("ece") == pytest.approx(section["ece"], abs=1e-3)
    assert recomputed == {k: v for k, v in section.items() if k != "ece"}
    truth = {row.path.name: row.label for row in read_manifest(PHOTOS)}
    assert all(truth[f] == row["truth"] for f, row in section["photos"].items())


def test_pretrained_heldout_targets() -> None:
    """Issue 14's targets, on leave-one-out answers: every full-size pet right at >= 0.8, >= 95 % of others."""
    section = card_of("pretrained")["heldout"]
    photos = section["photos"]
    assert len(photos) == len(read_manifest(PHOTOS))  # every photo was held out once
    for name in FULL_SIZE_PETS:
        assert photos[name]["answer"] == photos[name]["truth"], name
        assert photos[name]["confidence"] >= 0.8, name
    other = section["per_class"]["other"]
    assert other["correct"] >= 0.95 * other["total"]
    assert section["ece"] < OLD_PRETRAINED_ECE


def test_scratch_heldout_is_what_the_model_does() -> None:
    """The scratch card's held-out answers are re-measured on the held-out photos, none of them trained on."""
    card = card_of("scratch")
    selection, heldout = split(read_manifest(PHOTOS))
    trained_on = {p.path.name for p in selection}
    assert not trained_on & set(card["heldout"]["photos"])
    result = evaluate(MODELS / "scratch" / "model.onnx", card, heldout)
    for f, answer, row in zip(result.files, result.predicted, result.probabilities, strict=True):
        expected = card["heldout"]["photos"][f]
        assert answer == expected["answer"], f
        assert float(row[card["labels"].index(answer)]) == pytest.approx(expected["confidence"], abs=1e-4)
    assert "Weak" in card["caveat"]


@pytest.mark.parametrize("name", SHIPPED)
def test_users_see_the_heldout_figures(name: str) -> None:
    """GET /v1/models/{name} carries the card's held-out summary and caveat (shown on the page)."""
    card = card_of(name)
    body = describe(ServedModel(name=name, folder=MODELS / name, status="ready", card=ModelCard.model_validate(card)))
    assert body.heldout is not None
    assert body.heldout.correct == card["heldout"]["correct"]
    assert body.heldout.total == card["heldout"]["total"]
    assert body.heldout.ece == card["heldout"]["ece"]
    assert {k: v.model_dump() for k, v in body.heldout.per_class.items()} == card["heldout"]["per_class"]
    assert body.caveat == card.get("caveat")
    bare = {k: v for k, v in card.items() if k not in ("heldout", "caveat")}
    plain = describe(ServedModel(name=name, folder=MODELS / name, status="ready", card=ModelCard.model_validate(bare)))
    assert plain.heldout is None and plain.caveat is None
