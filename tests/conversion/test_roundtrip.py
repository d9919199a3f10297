"""Export -> checker -> parity -> card on a tiny network: the whole conversion path in a few seconds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from conversion.architectures import Architecture, Preprocessing  # noqa: E402
from conversion.convert import ConversionSpec, convert  # noqa: E402
from conversion.onnxrun import run_onnx, session  # noqa: E402
from conversion.parity import ParityError, check_parity  # noqa: E402
from conversion.photos import read_manifest  # noqa: E402
from conversion.preprocess import preprocess_batch  # noqa: E402
from service.dataplane.card import ModelCard  # noqa: E402

pytestmark = pytest.mark.torch


class TinyNet(torch.nn.Module):  # type: ignore[misc]
    """conv -> ReLU -> global average -> linear: exports to a handful of ONNX nodes."""

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.fc = torch.nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def tiny_module(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet().eval()


TINY = Architecture(
    name="tiny",
    description="tiny test network",
    image_size=32,
    preprocessing=Preprocessing(resize_short_side=36, interpolation="bilinear"),
    output_kind="logits",
    license="Apache-2.0",
    provenance={"weights": "random (test)"},
    build=lambda classes, checkpoint: TinyNet(classes),
)
SPEC = ConversionSpec(name="tiny", version="0.0.1", labels=("cat", "dog"), image_size=32)


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory, few_photos: Path) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("tiny") / "tiny"
    card = convert(tiny_module(), TINY, SPEC, out, read_manifest(few_photos))
    return out, card


def test_export_passes_checker_and_has_dynamic_batch(converted: tuple[Path, dict[str, object]]) -> None:
    folder, _ = converted
    model = onnx.load(str(folder / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, 32, 32]
    assert model.opset_import[0].version == 18
    sess = session(folder / "model.onnx")
    for n in (1, 3):
        assert run_onnx(sess, np.zeros((n, 3, 32, 32), np.float32)).shape == (n, 2)


def test_card_fields_match_the_file(converted: tuple[Path, dict[str, object]], few_photos: Path) -> None:
    folder, returned = converted
    card = json.loads((folder / "model.json").read_text())
    assert card == returned
    typed = ModelCard.model_validate(card)  # the service can read it
    assert (typed.name, typed.version, typed.labels) == ("tiny", "0.0.1", ["cat", "dog"])
    assert (typed.input.height, typed.input.width, typed.output.kind) == (32, 32, "logits")
    assert typed.preprocessing.resize_short_side == 36
    data = (folder / "model.onnx").read_bytes()
    assert card["onnx"] == {
        "file": "model.onnx",
        "sha256": hashlib.sha256(data).hexdigest(),
        "opset": 18,
        "size_bytes": len(data),
    }
    assert card["parity"]["images"] == 6
    assert card["parity"]["max_abs_diff"] <= 1e-4
    assert card["parity"]["label_agreement"] == "6/6"
    assert card["parity"]["onnxruntime"]
    # A 2-class model cannot answer "other": those photos count under their own heading, never as correct.
    per_class = card["accuracy"]["per_class"]
    assert {k: v["total"] for k, v in per_class.items()} == {"(not a model label)": 2, "cat": 2, "dog": 2}
    assert per_class["(not a model label)"]["correct"] == 0
    assert card["provenance"]["architecture"] == "tiny"
    assert card["license"] == "Apache-2.0"


def test_conversion_is_reproducible(
    converted: tuple[Path, dict[str, object]], tmp_path: Path, few_photos: Path
) -> None:
    _, first = converted
    second = convert(tiny_module(), TINY, SPEC, tmp_path / "tiny", read_manifest(few_photos))
    assert second == first


def test_parity_failure_is_reported(converted: tuple[Path, dict[str, object]], few_photos: Path) -> None:
    folder, card = converted
    batch = preprocess_batch([p.path for p in read_manifest(few_photos)], card)
    with pytest.raises(ParityError, match="differs from PyTorch"):
        check_parity(tiny_module(seed=1), folder / "model.onnx", batch)


def test_failed_parity_leaves_no_model_behind(tmp_path: Path, few_photos: Path) -> None:
    out = tmp_path / "tiny"
    spec = ConversionSpec(name="tiny", version="0.0.1", labels=("cat", "dog"), image_size=32, tolerance=-1.0)
    with pytest.raises(ParityError):
        convert(tiny_module(), TINY, spec, out, read_manifest(few_photos))
    assert list(out.iterdir()) == []


def test_cli_quantize_and_evaluate(
    converted: tuple[Path, dict[str, object]], tmp_path: Path, few_photos: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from conversion.cli import main

    folder, _ = converted
    assert main(["quantize", str(folder), "--photos", str(few_photos)]) == 0
    report = json.loads(capsys.readouterr().out)
    int8 = folder / report["file"]
    assert report["precision"] == "int8"
    assert report["size_bytes"] == int8.stat().st_size
    assert {"sha256", "answers_vs_fp32", "within_budget", "default_precision"} <= set(report)
    assert main(["evaluate", str(folder), "--photos", str(few_photos)]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 6


def test_cli_export_fails_cleanly_on_a_bad_request(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from conversion.cli import main

    assert main(["export", "--arch", "no_such_net", "--out", str(tmp_path / "x")]) == 1
    assert "unknown architecture" in caplog.text
