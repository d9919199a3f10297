"""`catdog predict` and `catdog models`: the service's own code path, no server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.images import BLUE, RED, encode, solid
from tests.support.onnx_models import write_test_repository
from tests.support.server import REPO_ROOT


def catdog(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )


def test_predict_locally(tiny_repository: Path, tmp_path: Path) -> None:
    (tmp_path / "red.png").write_bytes(encode(solid(RED), "PNG"))
    (tmp_path / "blue.jpg").write_bytes(encode(solid(BLUE), "JPEG"))
    result = catdog(
        "predict",
        str(tmp_path / "red.png"),
        str(tmp_path / "blue.jpg"),
        "--model",
        "scratch",
        "--model-dir",
        str(tiny_repository),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["label"] for a in answers] == ["cat", "dog"]
    assert all(a["model"] == "scratch" for a in answers)


def test_predict_reports_bad_files(tiny_repository: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.jpg").write_text("not an image")
    result = catdog("predict", str(tmp_path / "notes.jpg"), "--model", "scratch", "--model-dir", str(tiny_repository))
    assert result.returncode == 1
    assert "not a supported image" in result.stderr


def test_models_lists_the_repository(tiny_repository: Path) -> None:
    result = catdog("models", "--model-dir", str(tiny_repository), "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["scratch"]["input"] == "40x48"
    assert rows["pretrained"]["labels"] == ["cat", "dog", "other"]


def test_models_reports_what_the_service_would_fail(tmp_path: Path) -> None:
    """Same scan as the service: a folder with model.onnx but no card is listed with its error, not skipped."""
    write_test_repository(tmp_path)
    (tmp_path / "scratch" / "model.json").unlink()
    rows = {row["name"]: row for row in json.loads(catdog("models", "--model-dir", str(tmp_path), "--json").stdout)}
    assert "model.json" in rows["scratch"]["error"]
    assert rows["pretrained"]["version"] == "1.0.0"
