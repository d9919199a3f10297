"""How the cat / dog / other head on an ImageNet backbone is fitted (the head module itself, `MassLogistic`, is
registered with the other modules in conversion/architectures.py).

The shipped head reads the backbone's 1000-class softmax as four masses: domestic cats,
dogs, every other animal (ImageNet classes 0-397) and no animal at all (398-999). Their logarithms go into a
3-way logistic regression fitted on the bundled photos. This keeps what the backbone knows (a cat is a cat
whatever breed it guesses) while letting the fit learn that a yarn ball next to a kitten (non-animal mass)
says little, that a cheetah's dog mass is not a dog, and how confident to be. Four inputs and 15 weights can
be fitted on a few dozen photos without memorising them, which a head on the 1280 pooled features cannot
(measured: docs/models.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from conversion.architectures import LOG_FLOOR, membership_matrix
from conversion.augment import augmentation, resize
from conversion.photos import LabelledImage, PhotoImages
from conversion.preprocess import preprocess_batch

CROPS = 8
"""Augmented crops per photo (plus the served centre crop) the head is fitted on."""
SEED = 0


def log_masses(logits: np.ndarray) -> np.ndarray:
    """[..., 1000] ImageNet logits -> [..., 4] log group masses, as `MassLogistic` computes them in the graph."""
    x = logits.astype(np.float64)
    e = np.exp(x - x.max(-1, keepdims=True))
    p = e / e.sum(-1, keepdims=True)
    return np.asarray(np.log(p @ membership_matrix(x.shape[-1]).astype(np.float64) + LOG_FLOOR))


def fit_logistic(
    features: np.ndarray, labels: Sequence[int] | np.ndarray, *, l2: float, num_classes: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, class-balanced, L2 on standardised inputs; returns (W [C, F], b [C]).

    Deterministic (float64, full-batch L-BFGS from zeros) so a rebuild reproduces the weights exactly; the
    standardisation is folded back into W and b so the graph takes raw features.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mu) / sd)
    yt = torch.from_numpy(y)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    weight = torch.from_numpy(np.where(counts > 0, len(y) / (num_classes * np.maximum(counts, 1)), 0.0))
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(xt @ w + b, yt, weight=weight) + l2 * (w**2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    opt.step(closure)  # type: ignore[no-untyped-call]
    w_raw = w.detach().numpy() / sd[:, None]
    b_raw = b.detach().numpy() - mu @ w_raw
    return w_raw.T.copy(), b_raw


def predict_logistic(features: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, F] -> [N, C] probabilities of the fitted head (float64, as a check on the graph's float32)."""
    z = np.asarray(features, dtype=np.float64) @ w.T + b
    e = np.exp(z - z.max(1, keepdims=True))
    return np.asarray(e / e.sum(1, keepdims=True))


def backbone_views(
    module: nn.Module, photos: Sequence[LabelledImage], card: Mapping[str, Any], crops: int = CROPS, seed: int = SEED
) -> np.ndarray:
    """[N, 1 + crops, K] outputs of `module`: view 0 is the served centre crop, then seeded augmented crops.

    The centre crop goes through the service's own decoding and preprocessing; the crops through the training
    augmentation (random resized crops down to a fifth of the photo, flips, colour jitter).
    """
    torch.manual_seed(seed)
    torch.set_num_threads(1)  # float results depend on the thread count; fixed, so rebuilds match
    size = int(card["input"]["height"])
    mean = torch.tensor(card["preprocessing"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(card["preprocessing"]["std"]).view(1, 3, 1, 1)
    images = PhotoImages(photos, size)
    augment = augmentation(size)
    out = []
    with torch.no_grad():
        for i, photo in enumerate(photos):
            centre = torch.from_numpy(preprocess_batch([photo.path], card))
            batch = torch.stack([augment(images[i]) for _ in range(crops)])
            batch = (resize(batch.float(), size) - mean) / std
            out.append(module.eval()(torch.cat([centre, batch])).numpy())
    return np.stack(out)
