"""The models in models/: intact files, cards the service accepts, and the answers their cards claim.

Needs only ONNX Runtime (no PyTorch): these are the figures users see in the cards and the README.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from conversion.evaluate import evaluate
from conversion.onnxrun import session
from conversion.photos import read_manifest
from service.dataplane.card import ModelCard
from tests.conftest import PHOTOS
from tests.support.server import REPO_ROOT

MODELS = REPO_ROOT / "models"
SHIPPED = ("pretrained", "scratch")


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


def test_pretrained_says_cat_dog_and_other() -> None:
    card = card_of("pretrained")
    assert card["labels"] == ["cat", "dog", "other"]
    assert card["decision"]["fallback_label"] == "other"
    result = evaluate(MODELS / "pretrained" / "model.onnx", card, read_manifest(PHOTOS))
    answers = dict(zip(result.files, result.predicted, strict=True))
    # Every full-size cat and dog photo is right.
    for name in ("cat-cat.webp", "cat-skimage-chelsea.png", "dog-dog.jpg", "dog-dog.webp"):
        assert answers[name] == name.split("-")[0], name
    per_class = result.to_card("")["per_class"]
    assert per_class["cat"] == {"correct": 2, "total": 3}  # the 32x32 CIFAR cat is too small to tell
    assert per_class["dog"] == {"correct": 3, "total": 3}
    assert per_class["other"] == {"correct": 42, "total": 42}
