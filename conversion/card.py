"""model.json, the card the service reads (docs/architecture.md), plus the sections written for people."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from conversion.architectures import Architecture
from conversion.export import INPUT_NAME
from service.dataplane.card import ModelCard

ONNX_FILE = "model.onnx"
CARD_FILE = "model.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def serving_card(
    *,
    name: str,
    version: str,
    arch: Architecture,
    labels: Sequence[str],
    image_size: int,
    description: str | None = None,
    decision: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The fields the service needs to preprocess, run and read the model (no measurements yet)."""
    pre = arch.preprocessing.to_card()
    # Keep the architecture's crop ratio when the input size is not its default.
    pre["resize_short_side"] = round(pre["resize_short_side"] * image_size / arch.image_size)
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": description or arch.description,
        "labels": list(labels),
        "input": {"name": INPUT_NAME, "height": image_size, "width": image_size},
        "output": {"name": arch.output_kind, "kind": arch.output_kind},
        "preprocessing": pre,
    }
    if decision:
        card["decision"] = dict(decision)
    return card


def onnx_section(folder: Path, opset: int) -> dict[str, Any]:
    path = folder / ONNX_FILE
    return {"file": ONNX_FILE, "sha256": sha256_file(path), "opset": opset, "size_bytes": path.stat().st_size}


SERVING_KEYS = ("name", "version", "description", "labels", "input", "output", "preprocessing", "decision", "onnx")


def write_card(folder: Path, card: Mapping[str, Any]) -> Path:
    """Validate against the service's ModelCard, then write model.json: the serving fields first, in
    docs/architecture.md order, then the sections written for people; trailing newline."""
    ModelCard.model_validate(card)
    ordered = {**{k: card[k] for k in SERVING_KEYS if k in card}, **card}
    path = folder / CARD_FILE
    path.write_text(json.dumps(ordered, indent=2) + "\n")
    return path


def read_card(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / CARD_FILE).read_text())
    return data
