"""The decode profile (`python -m loadtest.decode_profile`): every stage is timed on a real JPEG and both
pipelines' answers are compared with the reference on the shipped model. Timings are reported, never asserted."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from loadtest import answers
from loadtest.decode_profile import deviations, markdown, stages
from service.dataplane.card import ModelCard

PRETRAINED = Path(__file__).resolve().parents[2] / "models" / "pretrained"
PHOTO = Path(__file__).resolve().parents[2] / "data" / "images" / "cat-cat.webp"


def _jpeg(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.open(PHOTO).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_every_stage_is_timed_at_the_scale_load_tensor_chooses() -> None:
    card = ModelCard.load(PRETRAINED / "model.json")
    small = stages(_jpeg((640, 480)), card.preprocessing, card.input, repeat=1)
    large = stages(_jpeg((2400, 1800)), card.preprocessing, card.input, repeat=1)
    assert (small["scale"], small["size"]) == ("8/8", "640x480")  # 2x of a 256 px resize needs every row
    assert large["scale"] == "4/8"  # 1800 rows at 1/4 would leave 394 for a 448-row window: too few
    for row in (small, large):
        for stage in ("checks", "decode", "decode_1/8", "layout", "resample", "normalise", "load_tensor"):
            assert row[stage] >= 0.0
        assert row["load_tensor"] > 0.0 and row["card_pipeline"] > 0.0
    table = markdown({"small.jpg": small}, {"small.jpg": {"load_tensor": 0.0001, "card_pipeline": 0.002}})
    assert "| small.jpg (640x480, " in table
    assert table.rstrip().endswith("| 0.0001 | 0.0020 |")


def test_deviations_compare_both_pipelines_with_the_reference() -> None:
    found = deviations(PRETRAINED, {"cat.jpg": _jpeg((640, 480))})
    assert set(found["cat.jpg"]) == {"load_tensor", "card_pipeline"}
    assert 0.0 <= found["cat.jpg"]["load_tensor"] <= answers.BUDGET
    assert 0.0 <= found["cat.jpg"]["card_pipeline"] < 1.0
