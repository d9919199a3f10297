"""Fixtures shared by the whole suite: real photos, tiny ONNX repositories and the service as a process."""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.onnx_models import write_test_repository
from tests.support.server import REPO_ROOT, ServiceProcess

PHOTOS = REPO_ROOT / "data" / "images"


def require_tool(name: str) -> str:
    """Path of a system tool; skips outside CI when missing, fails in CI (where .ci/run installs it)."""
    path = shutil.which(name)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required in CI (scripts/install-system-deps.sh installs it)")
    pytest.skip(f"{name} not installed (make system-deps installs it)")


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    """file name -> path of every real photo in data/images."""
    with (PHOTOS / "MANIFEST.csv").open() as f:
        return {row["file"]: PHOTOS / row["file"] for row in csv.DictReader(f)}


@pytest.fixture(scope="session")
def photo_labels() -> dict[str, str]:
    """file name -> cat | dog | other, from the manifest."""
    with (PHOTOS / "MANIFEST.csv").open() as f:
        return {row["file"]: row["label"] for row in csv.DictReader(f)}


@pytest.fixture(scope="session")
def tiny_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with two tiny colour classifiers named like the shipped models."""
    return write_test_repository(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def service(tiny_repository: Path) -> Iterator[ServiceProcess]:
    """One service process over the tiny repository, shared by read-only tests."""
    with ServiceProcess({"CATDOG_MODEL_DIR": str(tiny_repository)}) as svc:
        yield svc
