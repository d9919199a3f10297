"""The shipped INT8 files against their FP32 models on the bundled photos: the card's figures are re-measured,
and a card that makes INT8 its default must still be within the answer budget."""

from __future__ import annotations

from typing import Any

import pytest

from conversion import quantize as q
from conversion.card import read_card, sha256_file
from conversion.photos import read_manifest
from service.dataplane.card import ModelCard
from tests.support.server import REPO_ROOT

MODELS = REPO_ROOT / "models"
WITH_INT8 = sorted(p.parent.name for p in MODELS.glob(f"*/{q.INT8_FILE}"))


def test_every_int8_file_is_in_its_card() -> None:
    for name in WITH_INT8:
        entry = read_card(MODELS / name).get("variants", {}).get("int8")
        assert entry is not None, f"{name}: {q.INT8_FILE} is not listed in model.json"
        assert entry["sha256"] == sha256_file(MODELS / name / q.INT8_FILE), f"{name}: stale INT8 entry"
        assert entry["budget"] == {"max_abs_diff": q.MAX_SHIFT, "median_abs_diff": q.MEDIAN_SHIFT, "labels_changed": 0}


@pytest.mark.parametrize("name", WITH_INT8)
def test_card_figures_and_default_hold_on_the_photos(name: str) -> None:
    folder = MODELS / name
    card = read_card(folder)
    typed = ModelCard.model_validate(card)
    entry: dict[str, Any] = card["variants"]["int8"]
    photos = read_manifest()
    _, heldout = q.split_photos(photos)
    sets = {s.name: s for s in q.evaluation_sets(folder / typed.onnx.file, typed, photos, heldout)}
    measured = {c.name: c for c in q.compare_sets(folder / q.INT8_FILE, list(sets.values()), typed)}
    assert set(measured) == set(entry["answers_vs_fp32"]), "the photos changed since the card was written"
    for set_name, figures in entry["answers_vs_fp32"].items():
        got = measured[set_name]
        assert got.images == figures["images"], set_name
        assert got.changed == figures["labels_changed"], set_name
        assert got.max_shift == pytest.approx(figures["max_abs_diff"], abs=2e-3), set_name
        assert got.median_shift == pytest.approx(figures["median_abs_diff"], abs=2e-3), set_name
    if card.get("default_precision") == "int8":
        for got in measured.values():
            assert got.within_budget, f"{name} serves INT8 by default but {got.name} is outside the budget: {got}"


@pytest.mark.torch
def test_an_int8_default_carries_its_own_heldout_figures() -> None:
    """A card that serves INT8 by default reports INT8's own leave-one-out figures, and they are what the
    shipped INT8 file answers (recomputed here, conversion/quantized_heldout.py)."""
    from conversion.heldout import summarise
    from conversion.quantized_heldout import int8_heldout
    from conversion.reference import CROPS, HEAD_L2, LABELS, PRETRAINED_VARIANT

    folder = MODELS / "pretrained"
    card = read_card(folder)
    assert card["default_precision"] == "int8"
    section = card["variants"]["int8"]["heldout"]
    recomputed = summarise(section)
    assert recomputed.pop("ece") == pytest.approx(section["ece"], abs=1e-3)
    assert recomputed == {k: v for k, v in section.items() if k != "ece"}
    again = int8_heldout(
        folder, read_manifest(), card, variant=PRETRAINED_VARIANT, l2=HEAD_L2, crops=CROPS, labels=LABELS
    )
    assert {f: r["answer"] for f, r in again["photos"].items()} == {
        f: r["answer"] for f, r in section["photos"].items()
    }
    for name, row in section["photos"].items():
        assert again["photos"][name]["confidence"] == pytest.approx(row["confidence"], abs=2e-3), name
    assert again["ece"] == pytest.approx(section["ece"], abs=2e-3)
