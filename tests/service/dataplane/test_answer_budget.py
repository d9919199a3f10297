"""The fast preprocessing is held to the models' answers, not to grey levels: for every shipped model, on every
bundled photo and on re-encodings of some at 0.3, 2, 9 and 24 MP as JPEG, PNG and WebP, every probability stays
within 0.01 of the reference preprocessing's (full decode, the card's resize of the whole image, crop, float64
normalise) and no label changes under the card's decision rule.

The full matrix, with per-step timings, is `python -m loadtest answers` (docs/benchmarks.md). Here: the cat
(the shipped models' most sensitive photo: sub-grey-level changes move its probabilities by 0.01-0.02) at
every size and format, a 16:9 photo at every size as JPEG (the format whose decode is scaled) and at 2 MP in
the others. Re-encodings are cached in the temp folder: a cold run encodes a 24 MP PNG and WebP once."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtest.answers import BUDGET, bundled_photos, compare, model_dirs, reencoded

MODELS = model_dirs()


@pytest.fixture(scope="module")
def images() -> dict[str, bytes]:
    found = bundled_photos()
    found.update(reencoded(["cat-cat.webp"]))
    found.update(reencoded(["other-alpaca.webp"], formats=["jpg"]))
    found.update(reencoded(["other-alpaca.webp"], sizes=["2MP"], formats=["png", "webp"]))
    return found


def test_the_corpus_covers_every_size_and_format(images: dict[str, bytes]) -> None:
    assert len([n for n in images if "@" not in n]) >= 48
    for size in ("0.3MP", "2MP", "9MP", "24MP"):
        for ext in ("jpg", "png", "webp"):
            assert f"cat-cat.webp@{size}.{ext}" in images


@pytest.mark.slow
@pytest.mark.parametrize("folder", MODELS, ids=[p.name for p in MODELS])
def test_answers_within_budget(folder: Path, images: dict[str, bytes]) -> None:
    report = compare(folder, images)
    assert not report.label_changes, f"{folder.name}: labels changed on {report.label_changes}"
    assert not report.over_budget, f"{folder.name}: |dp| > {BUDGET} on {report.over_budget}"
