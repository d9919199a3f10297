"""What a (local, already materialized) repository holds: models, their versions, each version's folder.

Two layouts, as Triton and TF Serving lay out buckets: `<root>/<name>/model.json + model.onnx` (one version, named
by its card) or `<root>/<name>/<version>/model.json + model.onnx` (several, each card's `version` equal to its
folder's name). Scanning reads only names, sizes and modification times (and one small card for the first
layout): it is cheap enough to run on every poll."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from service.models.versions import POLICY_FILE, VersionPolicy, is_safe_name, is_version_name, read_policy

MARKERS = ("model.json", "model.onnx")


@dataclass(frozen=True, slots=True)
class VersionFolder:
    version: str
    folder: Path
    fingerprint: str
    """Changes when any file of the version changes (names, sizes, modification times): a reload is due."""
    size_bytes: int
    nested: bool
    """True in the `<name>/<version>/` layout: the card's version must equal the folder's name."""


@dataclass(slots=True)
class ModelLayout:
    name: str
    folder: Path
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    policy_error: str | None = None
    versions: dict[str, VersionFolder] = field(default_factory=dict)

    def wanted(self) -> list[str]:
        """The versions the policy serves (none when the policy cannot be read: the index says why)."""
        return [] if self.policy_error else self.policy.select(list(self.versions))


def scan(root: Path, only: set[str] | None = None) -> dict[str, ModelLayout]:
    """Every model folder under `root` (hidden folders and unsafe names skipped)."""
    if not root.is_dir():
        return {}
    models: dict[str, ModelLayout] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not is_safe_name(folder.name) or (only is not None and folder.name not in only):
            continue
        layout = _scan_model(folder)
        if layout is not None:
            models[folder.name] = layout
    return models


def _scan_model(folder: Path) -> ModelLayout | None:
    layout = ModelLayout(folder.name, folder)
    if any((folder / m).exists() for m in MARKERS):
        card = _read_json(folder / "model.json")
        version = card.get("version")
        name = version if isinstance(version, str) and is_safe_name(version) else "unknown"
        layout.versions[name] = _version(name, folder, nested=False)
        policy_source = card.get("version_policy")
    else:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and is_version_name(p.name)):
            if any((sub / m).exists() for m in MARKERS):
                layout.versions[sub.name] = _version(sub.name, sub, nested=True)
        if not layout.versions:
            return None
        policy_source = None
    try:
        layout.policy = read_policy(folder, policy_source)
    except (ValueError, OSError) as exc:
        layout.policy_error = f"{POLICY_FILE} or version_policy is invalid: {exc}"
    return layout


def _version(name: str, folder: Path, *, nested: bool) -> VersionFolder:
    digest = hashlib.sha256()
    size = 0
    # The single layout's files sit beside version folders' names only in a broken repository: files only, flat.
    files = sorted(folder.rglob("*") if nested else folder.iterdir())
    for path in files:
        if not path.is_file() or path.name == POLICY_FILE:
            continue
        stat = path.stat()
        size += stat.st_size
        digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return VersionFolder(name, folder, digest.hexdigest(), size, nested)


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
