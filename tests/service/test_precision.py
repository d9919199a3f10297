"""CATDOG_PRECISION and the card's variants: which ONNX file serves, and that the service says so.

The INT8 variant here is a different colour classifier (red is dog), so the answer itself shows which file ran:
a test that only read the reported precision could pass while the FP32 file served.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from service.dataplane.card import ModelCard
from tests.support.images import RED, encode, solid
from tests.support.onnx_models import RED_IS_CAT, build_colour_classifier, write_model_dir
from tests.support.server import ServiceProcess

RED_IS_DOG = RED_IS_CAT[:, ::-1].copy()


def _add_variant(folder: Path, model: onnx.ModelProto, *, default: str = "fp32", sha256: str | None = None) -> None:
    data = model.SerializeToString()
    (folder / "model.int8.onnx").write_bytes(data)
    card: dict[str, Any] = json.loads((folder / "model.json").read_text())
    card["variants"] = {
        "int8": {
            "file": "model.int8.onnx",
            "precision": "int8",
            "sha256": sha256 or hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
        }
    }
    card["default_precision"] = default
    (folder / "model.json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """both: FP32 + INT8 (default fp32); int8default: INT8 is the card's default; plain: an old card, FP32 only."""
    root = tmp_path_factory.mktemp("precision")
    _add_variant(write_model_dir(root, "both"), build_colour_classifier(RED_IS_DOG))
    _add_variant(write_model_dir(root, "int8default"), build_colour_classifier(RED_IS_DOG), default="int8")
    write_model_dir(root, "plain")
    return root


def _label(svc: ServiceProcess, model: str) -> str:
    red = encode(solid(RED, (40, 40)), "PNG")
    response = svc.client.post(f"/v1/models/{model}/predict", files={"file": ("red.png", red, "image/png")})
    assert response.status_code == 200, response.text
    label: str = response.json()["label"]
    return label


def _info(svc: ServiceProcess) -> dict[str, str]:
    """model -> precision label of catdog_model_info."""
    text = svc.client.get("/metrics").text
    found = {}
    for line in text.splitlines():
        if line.startswith("catdog_model_info{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            found[labels["model"]] = labels["precision"]
    return found


# (setting, model) -> (precision served, answer to a red image)
EXPECTED = {
    "auto": {"both": ("fp32", "cat"), "int8default": ("int8", "dog"), "plain": ("fp32", "cat")},
    "fp32": {"both": ("fp32", "cat"), "int8default": ("fp32", "cat"), "plain": ("fp32", "cat")},
    "int8": {"both": ("int8", "dog"), "int8default": ("int8", "dog"), "plain": ("fp32", "cat")},
}


@pytest.mark.parametrize("setting", sorted(EXPECTED))
def test_the_setting_picks_the_file_and_the_service_reports_it(repository: Path, setting: str) -> None:
    env = {"CATDOG_MODEL_DIR": str(repository), "CATDOG_PRECISION": setting}
    with ServiceProcess(env) as svc:
        info = _info(svc)
        for model, (precision, label) in EXPECTED[setting].items():
            body = svc.client.get(f"/v1/models/{model}").json()
            assert body["precision"] == precision, (model, body)
            assert body["precisions"] == (["fp32"] if model == "plain" else ["fp32", "int8"])
            card = json.loads((repository / model / "model.json").read_text())
            expected_sha = card["onnx"]["sha256"] if precision == "fp32" else card["variants"]["int8"]["sha256"]
            assert body["sha256"] == expected_sha
            assert _label(svc, model) == label, (setting, model)
            assert info[model] == precision
        fallbacks = [r for r in svc.logs() if r.get("event") == "model_precision_unavailable"]
        assert [r["model"] for r in fallbacks] == (["plain"] if setting == "int8" else [])


def test_a_variant_with_the_wrong_hash_fails_that_model_only(tmp_path: Path) -> None:
    folder = write_model_dir(tmp_path, "broken")
    _add_variant(folder, build_colour_classifier(RED_IS_DOG), default="int8", sha256="0" * 64)
    write_model_dir(tmp_path, "fine")
    with ServiceProcess({"CATDOG_MODEL_DIR": str(tmp_path)}) as svc:
        body = svc.client.get("/v1/models/broken").json()
        assert body["status"] == "failed"
        assert "model.int8.onnx" in body["error"]
        assert _label(svc, "fine") == "cat"


def test_card_resolution_and_validation() -> None:
    base = json.loads(json.dumps(_card()))
    card = ModelCard.model_validate(base)
    assert card.precisions == ["fp32"]
    assert card.resolve("int8") == ("fp32", "model.onnx", None)
    with_variant = {**base, "variants": {"int8": {"file": "model.int8.onnx", "sha256": "ab"}}}
    assert ModelCard.model_validate(with_variant).resolve("auto") == ("fp32", "model.onnx", None)
    assert ModelCard.model_validate(with_variant).resolve("int8") == ("int8", "model.int8.onnx", "ab")
    default_int8 = {**with_variant, "default_precision": "int8"}
    assert ModelCard.model_validate(default_int8).resolve("auto")[0] == "int8"
    assert ModelCard.model_validate(default_int8).resolve("fp32")[0] == "fp32"
    with pytest.raises(ValueError, match="default_precision"):
        ModelCard.model_validate({**base, "default_precision": "int8"})


def _card() -> dict[str, Any]:
    return {"name": "m", "version": "1", "labels": ["cat", "dog"], "input": {"height": 8, "width": 8}}


def test_the_variant_really_answers_differently() -> None:
    """Guards the premise of the tests above: the two files disagree on red."""
    assert not np.array_equal(RED_IS_DOG, RED_IS_CAT)
    assert RED_IS_DOG[0, 1] > RED_IS_DOG[0, 0]
