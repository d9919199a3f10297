"""API keys from a file of digests: `{"keys": [{"name": "ci", "sha256": "<hex>", "scopes": ["infer"]}]}`.

The file never holds a key, only the SHA-256 of it, so a leaked Secret or backup leaks no credential (keys are
random 32-byte tokens: a plain hash is enough, there is nothing to brute-force). A credential is compared with
every entry by `hmac.compare_digest`, all of them every time, so the answer's timing says nothing about which
entry or how much of a digest matched. Neither keys nor digests are ever logged: only an entry's name.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class Scope(enum.StrEnum):
    INFER = "infer"  # classify, model metadata
    ADMIN = "admin"  # the model repository API, anything that changes the server
    METRICS = "metrics"  # /metrics


class KeysFileError(ValueError):
    """The keys file cannot be read or is not a valid keys document (the message never quotes a digest)."""


_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9._:@-]{1,64}$")
KEY_PREFIX = "catdog_"


@dataclass(frozen=True)
class ApiKey:
    name: str
    digest: bytes  # sha256 of the key
    scopes: frozenset[Scope]


def digest_of(credential: str) -> bytes:
    return hashlib.sha256(credential.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class KeySet:
    keys: tuple[ApiKey, ...]

    def match(self, credential: str) -> ApiKey | None:
        """The entry whose digest is the credential's, in time independent of which one (or none) matches."""
        digest = digest_of(credential)
        found: ApiKey | None = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found

    def __len__(self) -> int:
        return len(self.keys)


def parse_keys(text: str) -> KeySet:
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise KeysFileError(f"not JSON: line {getattr(exc, 'lineno', '?')}") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeysFileError('expected {"keys": [...]}')
    keys: list[ApiKey] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        keys.append(_parse_entry(index, entry, names))
    return KeySet(tuple(keys))


def _parse_entry(index: int, entry: Any, names: set[str]) -> ApiKey:
    where = f"keys[{index}]"
    if not isinstance(entry, dict):
        raise KeysFileError(f"{where}: expected an object")
    name, digest, scopes = entry.get("name"), entry.get("sha256"), entry.get("scopes")
    if not isinstance(name, str) or not _NAME.match(name):
        raise KeysFileError(f"{where}: name must be 1-64 of A-Z a-z 0-9 . _ : @ -")
    if name in names:
        raise KeysFileError(f"{where}: duplicate name {name!r}")
    names.add(name)
    if not isinstance(digest, str) or not _HEX_DIGEST.match(digest.lower()):
        raise KeysFileError(f"{where} ({name}): sha256 must be 64 hex digits")
    if not isinstance(scopes, list) or not scopes:
        raise KeysFileError(f"{where} ({name}): scopes must be a non-empty list")
    try:
        parsed = frozenset(Scope(s) for s in scopes)
    except ValueError:
        allowed = ", ".join(s.value for s in Scope)
        raise KeysFileError(f"{where} ({name}): unknown scope; allowed: {allowed}") from None
    return ApiKey(name, bytes.fromhex(digest), parsed)


def load_keys(path: Path) -> KeySet:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KeysFileError(f"cannot read {path}: {type(exc).__name__}") from None
    return parse_keys(text)


def new_key(name: str, scopes: list[Scope]) -> tuple[str, dict[str, Any]]:
    """A fresh random key (shown once, to give to the client) and its entry for the keys file."""
    if not _NAME.match(name):
        raise KeysFileError("name must be 1-64 of A-Z a-z 0-9 . _ : @ -")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return key, {"name": name, "sha256": digest_of(key).hex(), "scopes": [s.value for s in scopes]}
