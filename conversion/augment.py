"""The training augmentation and the batch resize that training, head fitting and distillation share (PyTorch)."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torchvision.transforms import v2


def augmentation(size: int) -> v2.Compose:
    """Random crops (down to a fifth of the image), flips and colour jitter; yields uint8 [3, size, size]."""
    return v2.Compose(
        [
            v2.PILToTensor(),
            v2.RandomResizedCrop(size, scale=(0.2, 1.0), interpolation=v2.InterpolationMode.BICUBIC, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
        ]
    )


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square float batch [N,3,h,w] -> [N,3,size,size] (no-op when already that size)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
