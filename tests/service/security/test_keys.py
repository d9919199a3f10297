"""Keys file parsing, matching and key making (service/security/keys.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from service.security.keys import KeySet, KeysFileError, Scope, load_keys, new_key, parse_keys


def entry(name: str, key: str, *scopes: str) -> dict[str, object]:
    return {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": list(scopes)}


def keyset(*entries: dict[str, object]) -> KeySet:
    return parse_keys(json.dumps({"keys": list(entries)}))


def test_a_key_matches_its_entry_and_nothing_else() -> None:
    keys = keyset(entry("ci", "k-ci", "infer"), entry("ops", "k-ops", "admin", "metrics"))
    ci, ops = keys.match("k-ci"), keys.match("k-ops")
    assert ci is not None and ci.name == "ci" and ci.scopes == {Scope.INFER}
    assert ops is not None and ops.name == "ops" and ops.scopes == {Scope.ADMIN, Scope.METRICS}
    assert keys.match("k-ci ") is None
    assert keys.match("") is None
    assert keys.match(hashlib.sha256(b"k-ci").hexdigest()) is None  # the digest is not a key
    assert len(keys) == 2


def test_upper_case_digests_are_accepted() -> None:
    keys = parse_keys(
        json.dumps({"keys": [{**entry("a", "x", "infer"), "sha256": hashlib.sha256(b"x").hexdigest().upper()}]})
    )
    assert keys.match("x") is not None


@pytest.mark.parametrize(
    ("document", "says"),
    [
        ("not json", "not JSON"),
        ("[]", "expected"),
        ('{"keys": {}}', "expected"),
        ('{"keys": [1]}', "expected an object"),
        ('{"keys": [{"name": "a b", "sha256": "' + "0" * 64 + '", "scopes": ["infer"]}]}', "name"),
        ('{"keys": [{"name": "a", "sha256": "abc", "scopes": ["infer"]}]}', "64 hex"),
        ('{"keys": [{"name": "a", "sha256": "' + "0" * 64 + '", "scopes": []}]}', "non-empty"),
        ('{"keys": [{"name": "a", "sha256": "' + "0" * 64 + '", "scopes": ["root"]}]}', "unknown scope"),
        (
            '{"keys": [{"name": "a", "sha256": "' + "0" * 64 + '", "scopes": ["infer"]},'
            ' {"name": "a", "sha256": "' + "1" * 64 + '", "scopes": ["infer"]}]}',
            "duplicate",
        ),
    ],
)
def test_bad_documents_are_refused_without_quoting_digests(document: str, says: str) -> None:
    with pytest.raises(KeysFileError, match=says) as caught:
        parse_keys(document)
    assert "0" * 64 not in str(caught.value) and "1" * 64 not in str(caught.value)


def test_an_unreadable_file_is_a_keys_file_error(tmp_path: Path) -> None:
    with pytest.raises(KeysFileError, match="cannot read"):
        load_keys(tmp_path / "absent.json")


def test_new_key_gives_a_random_key_and_the_entry_that_matches_it() -> None:
    key, made = new_key("ci", [Scope.INFER, Scope.METRICS])
    other, _ = new_key("ci", [Scope.INFER])
    assert key != other and key.startswith("catdog_") and len(key) > 40
    assert made["sha256"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in json.dumps(made)
    found = keyset(made).match(key)
    assert found is not None and found.scopes == {Scope.INFER, Scope.METRICS}
