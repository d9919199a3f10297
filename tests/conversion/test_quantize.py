"""conversion/quantize.py on a tiny CNN the test builds: the INT8 file, the card's variant section, the budget
decision, reproducibility, and the pieces (photo split, head detection, calibration crops)."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from conversion import quantize as q
from conversion.card import read_card, sha256_file
from conversion.photos import read_manifest
from service.dataplane.card import ModelCard
from tests.support.onnx_models import build_tiny_cnn, write_model_dir


@pytest.fixture(scope="module")
def quantized(few_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_model_dir(
        tmp_path_factory.mktemp("q"), "tiny", labels=("cat", "dog", "other"), model=build_tiny_cnn()
    )
    q.quantize_folder(folder, read_manifest(few_photos))
    return folder


def test_writes_the_int8_file_and_an_additive_card_section(quantized: Path) -> None:
    card = read_card(quantized)
    ModelCard.model_validate(card)  # the service can read it
    entry = card["variants"]["int8"]
    assert entry["file"] == "model.int8.onnx"
    assert entry["sha256"] == sha256_file(quantized / "model.int8.onnx")
    assert entry["size_bytes"] == (quantized / "model.int8.onnx").stat().st_size
    assert card["onnx"]["file"] == "model.onnx"  # the FP32 section is untouched
    sets = entry["answers_vs_fp32"]
    assert set(sets) == {"held-out", "bundled", *(f"jpeg-{s}" for s in q.REENCODE_SIZES)}
    assert sets["bundled"]["images"] == 6
    assert sets["held-out"]["images"] == 3  # every second photo of each class
    assert entry["within_budget"] == all(s["within_budget"] for s in sets.values())
    assert entry["exact_on_every_cpu"] is False  # the default recipe: 8-bit weights, exact only on VNNI CPUs
    assert entry["method"]["recipe"]["reduce_range"] is False
    assert card["default_precision"] == ("int8" if entry["within_budget"] else "fp32")
    assert entry["method"]["recipe"]["bias_correction"] is True
    layers = [r["layer"] for r in entry["bias_corrections"]]
    assert set(layers) == {"conv1", "conv2"}, "both convolutions bias-corrected"
    assert entry["sensitivity"]["layers"], "per-layer figures from qdq_loss_debug"
    assert "speed" not in entry  # machine-dependent: only with --speed


def test_the_graph_is_int8_with_the_head_in_fp32(quantized: Path) -> None:
    model = onnx.load(str(quantized / "model.int8.onnx"))
    producers = {o: n for n in model.graph.node for o in n.output}
    conv1 = next(n for n in model.graph.node if n.name.startswith("conv1"))
    weight = producers[conv1.input[1]]
    assert weight.op_type == "DequantizeLinear"
    (scale,) = (i for i in model.graph.initializer if i.name == weight.input[1])
    assert scale.dims == [8], "per-channel weights: one scale per output channel"
    gemm = next(n for n in model.graph.node if n.op_type == "Gemm")
    assert all(producers.get(i) is None or producers[i].op_type != "DequantizeLinear" for i in gemm.input[1:])
    assert producers[gemm.input[0]].op_type != "DequantizeLinear"


def test_rebuild_gives_the_same_bytes(quantized: Path, few_photos: Path, tmp_path: Path) -> None:
    again = write_model_dir(tmp_path, "tiny", labels=("cat", "dog", "other"), model=build_tiny_cnn())
    q.quantize_folder(again, read_manifest(few_photos))
    assert sha256_file(again / "model.int8.onnx") == sha256_file(quantized / "model.int8.onnx")
    first, second = read_card(quantized), read_card(again)
    assert first["variants"]["int8"] == second["variants"]["int8"]


def test_outside_the_budget_the_default_stays_fp32(
    few_photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(q, "MAX_SHIFT", -1.0)  # no model can meet it
    folder = write_model_dir(tmp_path, "tiny", labels=("cat", "dog", "other"), model=build_tiny_cnn())
    summary = q.quantize_folder(folder, read_manifest(few_photos), recipe=q.Recipe(crops_per_photo=1))
    card = read_card(folder)
    assert summary["within_budget"] is False
    assert card["default_precision"] == "fp32"
    steps = card["variants"]["int8"]["sensitivity"]["selection_steps"]
    assert len(steps) > 1 and steps[1]["tried"], "the layer search ran"


def test_speed_is_carried_over_only_for_the_same_file(quantized: Path, few_photos: Path) -> None:
    card = read_card(quantized)
    card["variants"]["int8"]["speed"] = {"speedup": 2.0}
    (quantized / "model.json").write_text(json.dumps(card))
    q.quantize_folder(quantized, read_manifest(few_photos))
    assert read_card(quantized)["variants"]["int8"]["speed"] == {"speedup": 2.0}
    card["variants"]["int8"]["sha256"] = "0" * 64
    (quantized / "model.json").write_text(json.dumps(card))
    q.quantize_folder(quantized, read_manifest(few_photos))
    assert "speed" not in read_card(quantized)["variants"]["int8"]


def test_split_keeps_every_class_on_both_sides(few_photos: Path) -> None:
    photos = read_manifest(few_photos)
    selection, heldout = q.split_photos(photos)
    assert not {p.path for p in selection} & {p.path for p in heldout}
    assert len(selection) + len(heldout) == len(photos)
    for label in ("cat", "dog", "other"):
        assert any(p.label == label for p in selection) and any(p.label == label for p in heldout)


def test_head_nodes_start_at_the_global_pool() -> None:
    assert q.head_nodes(build_tiny_cnn()) == ["pool", "flatten", "fc", "softmax"]


def test_calibration_crops_are_seeded(few_photos: Path) -> None:
    photos = read_manifest(few_photos)[:2]
    card = ModelCard.model_validate(
        {"name": "t", "version": "1", "labels": ["a"], "input": {"height": 16, "width": 16}}
    )
    first = q.augmented_crops(photos, card, per_photo=3, seed=0)
    assert first.shape == (2 * 4, 3, 16, 16)
    assert (q.augmented_crops(photos, card, per_photo=3, seed=0) == first).all()
    assert not (q.augmented_crops(photos, card, per_photo=3, seed=1) == first).all()


def test_compare_counts_label_changes_under_the_decision_rule() -> None:
    import numpy as np

    card = ModelCard.model_validate(
        {
            "name": "t",
            "version": "1",
            "labels": ["cat", "dog", "other"],
            "input": {"height": 8, "width": 8},
            "decision": {"fallback_label": "other", "min_mass": 0.5},
        }
    )
    fp32 = np.array([[0.3, 0.25, 0.45], [0.9, 0.05, 0.05]], dtype=np.float32)  # cat (mass .55), cat
    int8 = np.array([[0.26, 0.23, 0.51], [0.88, 0.07, 0.05]], dtype=np.float32)  # other (mass .49), cat
    result = q.compare("s", ["a.jpg", "b.jpg"], fp32, int8, card)
    assert result.changed == ["a.jpg"]
    assert result.max_shift == pytest.approx(0.06)
    assert not result.within_budget


@pytest.mark.parametrize("reduce_range", [False, True])
def test_a_file_within_the_budget_becomes_the_default_and_says_where_it_is_exact(
    few_photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reduce_range: bool
) -> None:
    """Within the budget (as exact integer arithmetic) makes INT8 the default whatever the weights' range; the
    card records whether every CPU computes the file alike (7-bit) or only VNNI ones (8-bit), and the service
    emulates exact sums where the fast kernels would not compute them (tests/service/test_precision.py)."""
    monkeypatch.setattr(q, "MAX_SHIFT", 1.0)
    monkeypatch.setattr(q, "MEDIAN_SHIFT", 1.0)
    folder = write_model_dir(tmp_path, "tiny", labels=("cat", "dog", "other"), model=build_tiny_cnn())
    recipe = q.Recipe(crops_per_photo=1, reduce_range=reduce_range)
    summary = q.quantize_folder(folder, read_manifest(few_photos), recipe=recipe)
    assert summary["within_budget"] is True
    assert summary["exact_on_every_cpu"] is reduce_range
    card = read_card(folder)
    assert card["default_precision"] == "int8"


def test_a_file_outside_the_budget_is_not_the_default(
    few_photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(q, "MAX_SHIFT", -1.0)  # nothing is within a negative budget
    folder = write_model_dir(tmp_path, "tiny", labels=("cat", "dog", "other"), model=build_tiny_cnn())
    summary = q.quantize_folder(folder, read_manifest(few_photos), recipe=q.Recipe(crops_per_photo=1))
    assert summary["within_budget"] is False
    assert read_card(folder)["default_precision"] == "fp32"
