"""The training command on a PetImages-style folder (with broken files), and converting what it produces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from conversion.checkpoints import load_checkpoint  # noqa: E402
from conversion.cli import main  # noqa: E402
from tests.conversion.test_photos import pet_images  # noqa: E402
from tests.support.server import REPO_ROOT  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.slow]


def test_train_then_export(
    tmp_path: Path, few_photos: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    data = pet_images(tmp_path / "PetImages")
    checkpoint = tmp_path / "mine.pt"
    teacher = REPO_ROOT / "models" / "pretrained"
    args = ["--data", str(data), "--out", str(checkpoint), "--steps", "2", "--batch-size", "4"]
    args += ["--train-size", "32", "--image-size", "64", "--teacher", str(teacher)]
    assert main(["train", *args]) == 0
    assert "skipping unreadable image" in caplog.text
    summary = json.loads(capsys.readouterr().out)
    assert summary["labels"] == ["cat", "dog"]
    assert summary["training"]["images"] == {"cat": 2, "dog": 2}

    out = tmp_path / "models" / "mine"
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(out), "--photos", str(few_photos)]) == 0
    card = json.loads((out / "model.json").read_text())
    assert card["name"] == "mine"
    assert card["labels"] == ["cat", "dog"]
    assert card["input"] == {"name": "input", "height": 64, "width": 64}
    assert card["output"]["kind"] == "logits"
    assert card["provenance"]["architecture"] == "tf_efficientnetv2_b2"
    assert card["training"]["steps"] == 2
    assert card["parity"]["label_agreement"] == "6/6"


def test_bare_state_dict_with_a_two_class_head_loads(tmp_path: Path) -> None:
    """The seed's checkpoints: a bare state_dict (here saved from DataParallel, so keys start with module.)."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnetv2_b2", num_classes=2)
    path = tmp_path / "seed.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, path)
    loaded = load_checkpoint(path, image_size=260)
    assert (loaded.arch.name, loaded.labels, loaded.image_size) == ("tf_efficientnetv2_b2", ["cat", "dog"], 260)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], value), key
