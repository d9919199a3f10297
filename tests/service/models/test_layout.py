"""Both repository layouts, what a scan sees, and when a version's fingerprint moves."""

from __future__ import annotations

import json
import os
from pathlib import Path

from service.models.layout import scan
from tests.support.onnx_models import write_model_dir, write_version_dir


def test_one_version_and_nested_versions_side_by_side(tmp_path: Path) -> None:
    write_model_dir(tmp_path, "flat", version="1.0.0")
    for version in ("1", "2", "10"):
        write_version_dir(tmp_path, "nested", version)
    (tmp_path / "nested" / "notes").mkdir()  # not a version name: ignored
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "empty").mkdir()
    models = scan(tmp_path)
    assert sorted(models) == ["flat", "nested"]
    assert list(models["flat"].versions) == ["1.0.0"]
    assert not models["flat"].versions["1.0.0"].nested
    assert sorted(models["nested"].versions) == ["1", "10", "2"]
    assert models["nested"].wanted() == ["10"]
    assert all(v.nested for v in models["nested"].versions.values())


def test_policy_file_and_its_errors(tmp_path: Path) -> None:
    for version in ("1", "2", "3"):
        write_version_dir(tmp_path, "m", version)
    (tmp_path / "m" / "version_policy.json").write_text(json.dumps({"latest": {"num_versions": 2}}))
    assert scan(tmp_path)["m"].wanted() == ["2", "3"]
    (tmp_path / "m" / "version_policy.json").write_text("{not json")
    layout = scan(tmp_path)["m"]
    assert layout.wanted() == []
    assert layout.policy_error is not None and "version_policy" in layout.policy_error


def test_the_card_carries_the_policy_in_the_flat_layout(tmp_path: Path) -> None:
    write_model_dir(tmp_path, "flat", card_overrides={"version_policy": {"all": {}}})
    assert scan(tmp_path)["flat"].policy.kind == "all"


def test_fingerprint_moves_when_a_file_changes(tmp_path: Path) -> None:
    folder = write_version_dir(tmp_path, "m", "1")
    before = scan(tmp_path)["m"].versions["1"]
    assert scan(tmp_path)["m"].versions["1"].fingerprint == before.fingerprint  # stable while nothing changes
    onnx_file = folder / "model.onnx"
    stat = onnx_file.stat()
    os.utime(onnx_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    after = scan(tmp_path)["m"].versions["1"]
    assert after.fingerprint != before.fingerprint
    assert after.size_bytes == before.size_bytes > 0
