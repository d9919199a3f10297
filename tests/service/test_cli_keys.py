"""`catdog keys new`: a random key and the entry that admits it, the key never in the entry."""

from __future__ import annotations

import json
import subprocess
import sys

from service.security.keys import Scope, parse_keys
from tests.support.server import REPO_ROOT


def new_key(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", "keys", "new", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )


def test_keys_new_prints_a_key_and_its_entry() -> None:
    run = new_key("--name", "ci", "--scope", "infer", "--scope", "metrics", "--scope", "infer")
    assert run.returncode == 0, run.stderr
    printed = json.loads(run.stdout)
    key, entry = printed["key"], printed["entry"]
    assert key not in json.dumps(entry)
    assert entry["scopes"] == ["infer", "metrics"]
    found = parse_keys(json.dumps({"keys": [entry]})).match(key)
    assert found is not None and found.name == "ci" and found.scopes == {Scope.INFER, Scope.METRICS}
    assert json.loads(new_key("--name", "ci", "--scope", "infer").stdout)["key"] != key


def test_keys_new_refuses_bad_names_and_scopes() -> None:
    assert new_key("--name", "a b", "--scope", "infer").returncode == 2
    assert new_key("--name", "ci", "--scope", "root").returncode == 2
