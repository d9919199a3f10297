"""Fixtures for the conversion tests: a few real photos in the manifest layout, and a tiny architecture."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from tests.conftest import PHOTOS

FEW_PHOTOS = (
    "cat-cat.webp",
    "cat-skimage-chelsea.png",
    "dog-dog.jpg",
    "dog-cifar10-12-5.png",
    "other-sheep.webp",
    "other-giraffe.jpg",
)


@pytest.fixture(scope="session")
def few_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six real photos (cats, dogs, others) with their MANIFEST.csv rows: fast to preprocess."""
    folder = tmp_path_factory.mktemp("few_photos")
    with (PHOTOS / "MANIFEST.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = [row for row in reader if row["file"] in FEW_PHOTOS]
        fields = reader.fieldnames
    assert fields is not None
    assert len(rows) == len(FEW_PHOTOS)
    with (folder / "MANIFEST.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        shutil.copyfile(PHOTOS / row["file"], folder / row["file"])
    return folder
