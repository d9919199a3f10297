"""What is running: package version and git revision (from the setting, else read from .git without git)."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path


def package_version() -> str:
    try:
        return metadata.version("catdog")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def git_revision(configured: str | None, root: Path | None = None) -> str | None:
    if configured:
        return configured
    git = (root or Path.cwd()) / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            return (git / head[5:]).read_text().strip()[:12]
        return head[:12]
    except OSError:
        return None
