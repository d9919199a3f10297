"""Image file -> model input exactly as the service computes it, so parity and accuracy measure what is served.

The service owns decoding and preprocessing (`service.dataplane.imaging`); this module adapts it to files and cards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.dataplane.card import ModelCard
from service.dataplane.imaging import ImageLimits, load_tensor

# Generous: the service's own limits reject uploads, they never change the pixels of an accepted one.
LIMITS = ImageLimits(max_bytes=256 * 1024 * 1024, max_pixels=200_000_000)


def preprocess_file(path: Path, card: Mapping[str, Any] | ModelCard) -> np.ndarray:
    """float32 [3, H, W] for one image file, preprocessed as the service does for the model of `card`."""
    typed = card if isinstance(card, ModelCard) else ModelCard.model_validate(card)
    tensor, _ = load_tensor(path.read_bytes(), typed.preprocessing, typed.input, LIMITS)
    return tensor


def preprocess_batch(paths: Sequence[Path], card: Mapping[str, Any]) -> np.ndarray:
    """float32 [N, 3, H, W]."""
    typed = ModelCard.model_validate(card)
    return np.stack([preprocess_file(p, typed) for p in paths])
