"""Train a registered architecture from random initialisation on a folder of labelled images.

Deterministic (seeded RNGs, deterministic kernels, fixed threads) so that `build-reference` reproduces the
shipped `scratch` weights. An optional teacher (the pretrained model) adds knowledge distillation on the same
augmented crops, which is what makes training on a few dozen photos produce anything at all.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812

from conversion.architectures import Architecture, get_architecture
from conversion.augment import augmentation, resize
from conversion.card import read_card
from conversion.onnxrun import run_onnx, session
from conversion.photos import PhotoImages, load_labelled

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    data: Path
    out: Path
    arch: str = "tf_efficientnetv2_b2"
    labels: tuple[str, ...] | None = None
    teacher: Path | None = None
    image_size: int = 160
    train_size: int = 128
    steps: int = 300
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 0.05
    distill_weight: float = 0.7
    temperature: float = 2.0
    seed: int = 0
    threads: int = 1
    only: tuple[str, ...] | None = None
    """Train on these file names from `data` only (the selection half of a held-out split); None: all."""


def normalise(batch_uint8: torch.Tensor, arch: Architecture, size: int) -> torch.Tensor:
    """uint8 [N,3,h,w] -> the float input `arch` expects at `size` (0..255 scale, per-channel mean/std)."""
    x = resize(batch_uint8.float(), size)
    mean = torch.tensor(arch.preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(arch.preprocessing.std).view(1, 3, 1, 1)
    return (x - mean) / std


def balanced_sampler(labels: Sequence[int], generator: torch.Generator) -> torch.utils.data.WeightedRandomSampler:
    """Each class drawn equally often: the photos are 42 "other" against 3 cats and 3 dogs."""
    counts = Counter(labels)
    weights = [1.0 / counts[y] for y in labels]
    return torch.utils.data.WeightedRandomSampler(weights, num_samples=len(labels), generator=generator)


class _Teacher:
    """A served model (ONNX + card, e.g. models/pretrained) whose probabilities are mapped onto the student's
    labels. ONNX Runtime runs it several times faster than the PyTorch original, which matters on 2 cores."""

    def __init__(self, model_dir: Path, student_labels: Sequence[str]) -> None:
        self.card = read_card(model_dir)
        if self.card["output"]["kind"] != "probabilities":
            raise ValueError(f"teacher {model_dir} must output probabilities")
        missing = [label for label in student_labels if label not in self.card["labels"]]
        if missing:
            raise ValueError(f"teacher {model_dir} cannot label {missing}")
        self.columns = [self.card["labels"].index(label) for label in student_labels]
        self.session = session(model_dir / self.card["onnx"]["file"])
        pre = self.card["preprocessing"]
        self.mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1)
        self.std = torch.tensor(pre["std"]).view(1, 3, 1, 1)

    def soft_targets(self, crops: torch.Tensor, temperature: float) -> torch.Tensor:
        x = resize(crops.float(), self.card["input"]["height"])
        probs = torch.from_numpy(run_onnx(self.session, ((x - self.mean) / self.std).numpy()))[:, self.columns]
        sharpened: torch.Tensor = probs.clamp_min(1e-8).pow(1.0 / temperature)
        return sharpened / sharpened.sum(1, keepdim=True)


def _seed(config: TrainConfig) -> torch.Generator:
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    torch.use_deterministic_algorithms(True)
    return torch.Generator().manual_seed(config.seed)


def _lr(step: int, config: TrainConfig) -> float:
    warmup = max(1, config.steps // 20)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * progress))


def train(config: TrainConfig) -> dict[str, Any]:
    """Train, save the checkpoint to `config.out`, and return it (arch, labels, sizes, state_dict, training)."""
    generator = _seed(config)
    items = load_labelled(config.data)
    labels = list(config.labels or sorted({i.label for i in items}))
    items = [i for i in items if i.label in labels and (config.only is None or i.path.name in config.only)]
    targets = [labels.index(i.label) for i in items]
    log.info("training on %d images: %s", len(items), dict(Counter(i.label for i in items)))

    arch = get_architecture(config.arch)
    model = arch.build(len(labels), None).train()
    teacher = _Teacher(config.teacher, labels) if config.teacher else None
    images = PhotoImages(items, config.train_size)
    augment = augmentation(config.train_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sampler = balanced_sampler(targets, generator)

    start = time.perf_counter()
    order: list[int] = []
    loss_value = float("nan")
    for step in range(config.steps):
        while len(order) < config.batch_size:
            order += list(sampler)
        batch_idx, order = order[: config.batch_size], order[config.batch_size :]
        crops = torch.stack([augment(images[i]) for i in batch_idx])
        hard = torch.tensor([targets[i] for i in batch_idx])
        logits = model(normalise(crops, arch, config.train_size))
        loss = F.cross_entropy(logits, hard, label_smoothing=0.1)
        if teacher is not None:
            soft = teacher.soft_targets(crops, config.temperature)
            kd = F.kl_div(F.log_softmax(logits / config.temperature, 1), soft, reduction="batchmean")
            loss = (1 - config.distill_weight) * loss + config.distill_weight * config.temperature**2 * kd
        for group in optimiser.param_groups:
            group["lr"] = _lr(step, config)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        loss_value = float(loss.detach())
        if step % 25 == 0 or step == config.steps - 1:
            log.info("step %d/%d loss %.4f (%.0f s)", step + 1, config.steps, loss_value, time.perf_counter() - start)

    seconds = time.perf_counter() - start
    settings = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items() if k not in ("out", "only")
    }
    checkpoint: dict[str, Any] = {
        "arch": arch.name,
        "labels": labels,
        "image_size": config.image_size,
        "state_dict": model.eval().state_dict(),
        "training": {
            **settings,
            "labels": labels,
            "images": dict(sorted(Counter(i.label for i in items).items())),
            "final_loss": round(loss_value, 4),
        },
        "training_seconds": round(seconds, 1),
    }
    config.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, config.out)
    log.info("saved %s after %.0f s", config.out, seconds)
    return checkpoint
