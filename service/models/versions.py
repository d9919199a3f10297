"""Version names, their order, and the version policy (Triton's): which of a model's versions to serve."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

POLICY_FILE = "version_policy.json"
_SEMVER = re.compile(r"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


def is_version_name(name: str) -> bool:
    """A folder name that can be a version: a number or a semantic version (`3`, `1.2.0`, `v2`, `2.0.0-rc1`)."""
    return bool(_SEMVER.match(name))


def is_safe_name(name: str) -> bool:
    """Model and version names as they may appear in a URL and a folder: no separators, no `..`."""
    return bool(_NAME.match(name)) and ".." not in name


def version_key(version: str) -> tuple[Any, ...]:
    """Sort key: numeric / semver order (`10` after `9`, `1.0.0-rc1` before `1.0.0`); other names after, by text."""
    match = _SEMVER.match(version)
    if match is None:
        return (1, version)
    major, minor, patch, pre = match.groups()
    numbers = (int(major), int(minor or 0), int(patch or 0))
    # A pre-release sorts before its release; pre-release identifiers compare numerically where they are numbers.
    pre_key: tuple[Any, ...] = (
        (1,) if pre is None else (0, *((0, int(p)) if p.isdigit() else (1, p) for p in pre.split(".")))
    )
    return (0, numbers, pre_key)


def latest(versions: list[str]) -> str | None:
    return max(versions, key=version_key) if versions else None


@dataclass(frozen=True, slots=True)
class VersionPolicy:
    """`latest` N (default 1), `all`, or `specific` versions, as Triton's `version_policy`."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[str, ...] = ()

    def select(self, available: list[str]) -> list[str]:
        ordered = sorted(available, key=version_key)
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.num_versions :]

    @classmethod
    def parse(cls, raw: object) -> VersionPolicy:
        """Triton's JSON form: `{"latest": {"num_versions": 2}}`, `{"all": {}}`, `{"specific": {"versions":
        ["1", "3"]}}` (numbers are taken as their text). Raises ValueError with what is wrong."""
        if not isinstance(raw, dict) or len(raw) != 1:
            raise ValueError('version_policy must be one of {"latest": {...}}, {"all": {}}, {"specific": {...}}')
        ((kind, body),) = raw.items()
        body = body if isinstance(body, dict) else {}
        if kind == "all":
            return cls("all")
        if kind == "latest":
            n = body.get("num_versions", 1)
            if type(n) is not int or n < 1:
                raise ValueError("version_policy.latest.num_versions must be a whole number >= 1")
            return cls("latest", num_versions=n)
        if kind == "specific":
            versions = body.get("versions")
            if not isinstance(versions, list) or not versions:
                raise ValueError("version_policy.specific.versions must be a non-empty list")
            return cls("specific", versions=tuple(str(v) for v in versions))
        raise ValueError(f"unknown version_policy {kind!r} (latest, all, specific)")


def read_policy(model_folder: Path, card_policy: object = None) -> VersionPolicy:
    """The policy file in the model folder wins over the card's `version_policy`; neither: latest 1."""
    path = model_folder / POLICY_FILE
    if path.is_file():
        return VersionPolicy.parse(json.loads(path.read_text(encoding="utf-8")))
    if card_policy is not None:
        return VersionPolicy.parse(card_policy)
    return VersionPolicy()
