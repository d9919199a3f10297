"""Keys files for the access-control tests: named keys with scopes, written as the service reads them (digests
only), optionally into a kubelet-style Secret volume."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.support.certs import SecretVolume

# name -> (key, scopes); the keys are what clients send, the file holds only their digests.
KEYS: dict[str, tuple[str, list[str]]] = {
    "ci": ("catdog_test-infer-key", ["infer"]),
    "ops": ("catdog_test-admin-key", ["admin"]),
    "prometheus": ("catdog_test-metrics-key", ["metrics"]),
}
INFER, ADMIN, METRICS = (KEYS[name][0] for name in ("ci", "ops", "prometheus"))
UNKNOWN = "catdog_not-a-key-of-this-service"


def keys_document(keys: dict[str, tuple[str, list[str]]]) -> bytes:
    entries = [
        {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": scopes}
        for name, (key, scopes) in keys.items()
    ]
    return json.dumps({"keys": entries}, indent=2).encode()


def keys_volume(root: Path, keys: dict[str, tuple[str, list[str]]] = KEYS) -> SecretVolume:
    volume = SecretVolume(root)
    volume.publish({"keys.json": keys_document(keys)})
    return volume


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
