"""Labelled images: the bundled photos' MANIFEST.csv, class-per-folder trees such as `PetImages/{Cat,Dog}`, and
`PhotoImages`, the decoded photos training and head fitting crop from.

Real-world folders (the Kaggle PetImages set famously) hold corrupt and non-image files: they are skipped
with a warning rather than failing a long training run. Pillow only (no PyTorch): the quantizer and the
shipped-model tests read photos without the `convert` extra's training stack.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

DEFAULT_PHOTOS = Path(__file__).resolve().parents[1] / "data" / "images"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
CACHE_LIMIT = 2000
"""Data sets up to this many images are decoded once and kept (small, downscaled) in memory."""


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: str


def read_manifest(folder: Path = DEFAULT_PHOTOS) -> list[LabelledImage]:
    """The photos listed in `folder/MANIFEST.csv` (columns `file`, `label`), in file-name order."""
    with (folder / "MANIFEST.csv").open(newline="") as f:
        rows = [LabelledImage(folder / row["file"], row["label"]) for row in csv.DictReader(f)]
    return sorted(rows, key=lambda r: r.path.name)


def is_readable_image(path: Path) -> bool:
    """True when Pillow can fully decode `path` (a header check alone misses truncated files)."""
    try:
        with Image.open(path) as img:
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        log.warning("skipping unreadable image %s: %s", path, exc)
        return False
    return True


def scan_image_folder(root: Path) -> list[LabelledImage]:
    """`root/<Class>/<image>` -> images labelled with the lower-cased folder name; unreadable files skipped."""
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    images: list[LabelledImage] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(p for p in class_dir.rglob("*") if p.is_file()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                log.warning("skipping non-image file %s", path)
            elif is_readable_image(path):
                images.append(LabelledImage(path, class_dir.name.lower()))
    if not images:
        raise ValueError(f"{root}: no readable images in class sub-folders")
    return images


def load_labelled(source: Path) -> list[LabelledImage]:
    """A folder with MANIFEST.csv is read through the manifest, any other folder as class sub-folders."""
    return read_manifest(source) if (source / "MANIFEST.csv").is_file() else scan_image_folder(source)


class PhotoImages:
    """Decoded RGB images, downscaled to twice the crop size (crops never need more), cached when small."""

    def __init__(self, items: Sequence[LabelledImage], crop_size: int) -> None:
        self.items = list(items)
        self.short_side = 2 * crop_size
        self.cache: dict[int, Image.Image] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Image.Image:
        if i in self.cache:
            return self.cache[i]
        with Image.open(self.items[i].path) as raw:
            raw.draft("RGB", (self.short_side, self.short_side))  # JPEG: decode at reduced size, much faster
            img = ImageOps.exif_transpose(raw).convert("RGB")
        scale = self.short_side / min(img.size)
        if scale < 1:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC)
        if len(self.items) <= CACHE_LIMIT:
            self.cache[i] = img
        return img
