"""Turn a checkpoint into (architecture, module, labels, input size): ours carry all four, a bare state_dict
(such as the seed's trained EfficientNetV2-B2 models) needs them from the command line."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from conversion.architectures import Architecture, get_architecture

DEFAULT_LABELS = ("cat", "dog")


@dataclass(frozen=True)
class LoadedCheckpoint:
    arch: Architecture
    module: nn.Module
    labels: list[str]
    image_size: int
    training: dict[str, Any] | None


def load_checkpoint(
    path: Path | None,
    *,
    arch: str | None = None,
    labels: Sequence[str] | None = None,
    image_size: int | None = None,
) -> LoadedCheckpoint:
    """Build the module; command-line values win over what the checkpoint records."""
    meta: dict[str, Any] = {}
    if path is not None:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and "arch" in obj and "labels" in obj:
            meta = obj
    architecture = get_architecture(arch or meta.get("arch") or "tf_efficientnetv2_b2")
    names = list(labels or meta.get("labels") or _default_labels(architecture))
    module = architecture.build(len(names), path)
    return LoadedCheckpoint(
        arch=architecture,
        module=module,
        labels=names,
        image_size=image_size or meta.get("image_size") or architecture.image_size,
        training=meta.get("training"),
    )


def _default_labels(arch: Architecture) -> Sequence[str]:
    return ("cat", "dog", "other") if arch.output_kind == "probabilities" else DEFAULT_LABELS
