"""CATDOG_PRECISION and the card's variants: which ONNX file serves, and that the service says so.

The INT8 variant here is a different colour classifier (red is dog), so the answer itself shows which file ran:
a test that only read the reported precision could pass while the FP32 file served. Where a variant is not exact
on every CPU, whether its session emulates exact sums depends on this machine's CPU (service/dataplane/cpu.py):
the expectations read it too, so they hold on a VNNI machine as on an AVX2 one.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import pytest

from service.dataplane.card import ModelCard, Resolved
from service.dataplane.cpu import this_cpu
from tests.support.images import RED, encode, solid
from tests.support.onnx_models import RED_IS_CAT, build_colour_classifier, write_model_dir
from tests.support.server import ServiceProcess

RED_IS_DOG = RED_IS_CAT[:, ::-1].copy()


NATIVE = this_cpu().native
"""This machine computes INT8 sums exactly (VNNI): a file not exact on every CPU needs no emulation here."""


def _heldout(correct: int) -> dict[str, Any]:
    return {"method": "test", "correct": correct, "total": 4, "per_class": {"cat": {"correct": correct, "total": 4}}}


def _add_variant(
    folder: Path,
    model: onnx.ModelProto,
    *,
    default: str = "fp32",
    sha256: str | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """`extra`: more keys of the variant's entry (exact_on_every_cpu, heldout)."""
    data = model.SerializeToString()
    (folder / "model.int8.onnx").write_bytes(data)
    card: dict[str, Any] = json.loads((folder / "model.json").read_text())
    card["variants"] = {
        "int8": {
            "file": "model.int8.onnx",
            "precision": "int8",
            "sha256": sha256 or hashlib.sha256(data).hexdigest(),
            "size_bytes": len(data),
            **(extra or {}),
        }
    }
    card["default_precision"] = default
    (folder / "model.json").write_text(json.dumps(card))


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """both: FP32 + INT8 (default fp32); int8default: INT8 is the card's default; inexact: INT8 is the default
    but exact only where INT8 sums are (full 8-bit weights), with held-out figures of its own beside FP32's;
    plain: an old card, FP32 only."""
    root = tmp_path_factory.mktemp("precision")
    _add_variant(write_model_dir(root, "both"), build_colour_classifier(RED_IS_DOG))
    _add_variant(write_model_dir(root, "int8default"), build_colour_classifier(RED_IS_DOG), default="int8")
    inexact = write_model_dir(root, "inexact", card_overrides={"heldout": _heldout(4)})
    extra = {"exact_on_every_cpu": False, "heldout": _heldout(3)}
    _add_variant(inexact, build_colour_classifier(RED_IS_DOG), default="int8", extra=extra)
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
    "auto": {
        "both": ("fp32", "cat"),
        "int8default": ("int8", "dog"),
        "inexact": ("int8", "dog"),
        "plain": ("fp32", "cat"),
    },
    "fp32": {
        "both": ("fp32", "cat"),
        "int8default": ("fp32", "cat"),
        "inexact": ("fp32", "cat"),
        "plain": ("fp32", "cat"),
    },
    "int8": {
        "both": ("int8", "dog"),
        "int8default": ("int8", "dog"),
        "inexact": ("int8", "dog"),
        "plain": ("fp32", "cat"),
    },
}
# setting -> the models logged as: no file of that precision; INT8 default served as FP32 (only off the CPU);
# INT8 with exact sums emulated (on a CPU without VNNI)
UNAVAILABLE = {"auto": [], "fp32": [], "int8": ["plain"]}
FALLBACKS: dict[str, list[str]] = {"auto": [], "fp32": [], "int8": []}  # only off the CPU (CUDA), not run here
EMULATED = {"auto": [] if NATIVE else ["inexact"], "fp32": [], "int8": [] if NATIVE else ["inexact"]}


def _logged(svc: ServiceProcess, event: str, expected: list[str]) -> list[str]:
    """The models `event` was logged for, once the expected ones are there (or its deadline has passed)."""
    records = svc.wait_for_log(lambda r: r.get("event") == event, count=len(expected))
    return [r["model"] for r in records]


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
            if model == "inexact":  # held-out figures of the file served: INT8's own section (3 of 4), else FP32's
                assert body["heldout"]["correct"] == (3 if precision == "int8" else 4), body
        assert _logged(svc, "model_precision_unavailable", UNAVAILABLE[setting]) == UNAVAILABLE[setting]
        assert _logged(svc, "model_precision_fallback", FALLBACKS[setting]) == FALLBACKS[setting]
        assert _logged(svc, "model_int8_exact_emulation", EMULATED[setting]) == EMULATED[setting]
        reasons = [
            r for r in svc.logs() if r.get("event") in {"model_precision_fallback", "model_int8_exact_emulation"}
        ]
        assert all(r["reason"] for r in reasons), reasons


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
    for native in (False, True):
        assert card.resolve("int8", int8_native=native) == Resolved("fp32", "model.onnx", None, exact_int8=False)
    with_variant = {**base, "variants": {"int8": {"file": "model.int8.onnx", "sha256": "ab"}}}
    assert ModelCard.model_validate(with_variant).resolve("auto", int8_native=False) == FP32
    assert ModelCard.model_validate(with_variant).resolve("int8", int8_native=False) == INT8
    default_int8 = {**with_variant, "default_precision": "int8"}
    assert ModelCard.model_validate(default_int8).resolve("auto", int8_native=False).precision == "int8"
    assert ModelCard.model_validate(default_int8).resolve("fp32", int8_native=True).precision == "fp32"
    with pytest.raises(ValueError, match="default_precision"):
        ModelCard.model_validate({**base, "default_precision": "int8"})


FP32 = Resolved("fp32", "model.onnx", None, exact_int8=False)
INT8 = Resolved("int8", "model.int8.onnx", "ab", exact_int8=False)
INT8_EMULATED = INT8._replace(exact_int8=True)


@pytest.mark.parametrize(
    ("wanted", "default", "exact_on_every_cpu", "native", "on_cpu", "served"),
    [
        # fp32 is fp32, whatever the CPU and the card's default
        ("fp32", "int8", False, False, True, FP32),
        ("fp32", "int8", False, True, True, FP32),
        # auto, default fp32: fp32
        ("auto", "fp32", False, True, True, FP32),
        # auto, default int8: int8 on every CPU, natively where the file answers as its card says without help
        ("auto", "int8", True, False, True, INT8),
        ("auto", "int8", True, True, True, INT8),
        ("auto", "int8", False, True, True, INT8),
        # ... and with exact sums emulated where the fast kernels would move its answers
        ("auto", "int8", False, False, True, INT8_EMULATED),
        # off the CPU (CUDA) auto serves FP32: the QDQ graph is a CPU file; forced INT8 runs as it is
        ("auto", "int8", False, False, False, FP32),
        ("auto", "int8", True, False, False, FP32),
        ("int8", "int8", False, False, False, INT8),
        # int8 forced: the file, emulated exactly only where it needs it
        ("int8", "fp32", False, False, True, INT8_EMULATED),
        ("int8", "int8", False, False, True, INT8_EMULATED),
        ("int8", "fp32", False, True, True, INT8),
        ("int8", "fp32", True, False, True, INT8),
        ("int8", "fp32", True, True, True, INT8),
    ],
)
def test_resolve_by_cpu_and_variant(
    wanted: Literal["auto", "fp32", "int8"],
    default: str,
    exact_on_every_cpu: bool,
    native: bool,
    on_cpu: bool,
    served: Resolved,
) -> None:
    variant = {"file": "model.int8.onnx", "sha256": "ab", "exact_on_every_cpu": exact_on_every_cpu}
    card = ModelCard.model_validate({**_card(), "variants": {"int8": variant}, "default_precision": default})
    assert card.resolve(wanted, int8_native=native, on_cpu=on_cpu) == served


def test_exact_on_every_cpu_is_true_unless_the_card_says_otherwise() -> None:
    """Older cards (no key) and 7-bit files (`true`) compute alike on every CPU."""
    variant = ModelCard.model_validate({**_card(), "variants": {"int8": {"file": "model.int8.onnx"}}}).variants["int8"]
    assert variant.exact_on_every_cpu is True
    assert "exact_on_every_cpu" not in (variant.model_extra or {})


def _card() -> dict[str, Any]:
    return {"name": "m", "version": "1", "labels": ["cat", "dog"], "input": {"height": 8, "width": 8}}


def test_the_variant_really_answers_differently() -> None:
    """Guards the premise of the tests above: the two files disagree on red."""
    assert not np.array_equal(RED_IS_DOG, RED_IS_CAT)
    assert RED_IS_DOG[0, 1] > RED_IS_DOG[0, 0]
