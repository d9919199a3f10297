"""Labelled image sources: the manifest, and PetImages-style folders with broken files in them."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from conversion.photos import load_labelled, read_manifest, scan_image_folder
from tests.conftest import PHOTOS


def pet_images(root: Path) -> Path:
    """PetImages/{Cat,Dog} with two good photos each, a truncated JPEG, an empty file and a Thumbs.db."""
    for cls, files in {
        "Cat": ["cat-cat.webp", "cat-skimage-chelsea.png"],
        "Dog": ["dog-dog.jpg", "dog-dog.webp"],
    }.items():
        (root / cls).mkdir(parents=True)
        for i, name in enumerate(files):
            shutil.copyfile(PHOTOS / name, root / cls / f"{i}{Path(name).suffix}")
    (root / "Cat" / "666.jpg").write_bytes((PHOTOS / "dog-dog.jpg").read_bytes()[:2000])
    (root / "Dog" / "11702.jpg").write_bytes(b"")
    (root / "Dog" / "Thumbs.db").write_bytes(b"\x00" * 64)
    return root


def test_scan_skips_corrupt_and_non_image_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = pet_images(tmp_path / "PetImages")
    with caplog.at_level(logging.WARNING):
        images = scan_image_folder(root)
    assert sorted((i.label, i.path.name) for i in images) == [
        ("cat", "0.webp"),
        ("cat", "1.png"),
        ("dog", "0.jpg"),
        ("dog", "1.webp"),
    ]
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in ("666.jpg", "11702.jpg", "Thumbs.db"):
        assert name in warned


def test_manifest_is_read_when_present() -> None:
    photos = load_labelled(PHOTOS)
    assert photos == read_manifest(PHOTOS)
    assert {p.label for p in photos} == {"cat", "dog", "other"}
    assert all(p.path.is_file() for p in photos)


def test_empty_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "Cat").mkdir()
    with pytest.raises(ValueError, match="no readable images"):
        scan_image_folder(tmp_path)
