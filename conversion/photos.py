"""Labelled images: the bundled photos' MANIFEST.csv and class-per-folder trees such as `PetImages/{Cat,Dog}`.

Real-world folders (the Kaggle PetImages set famously) hold corrupt and non-image files: they are skipped
with a warning rather than failing a long training run.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

log = logging.getLogger(__name__)

DEFAULT_PHOTOS = Path(__file__).resolve().parents[1] / "data" / "images"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


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
