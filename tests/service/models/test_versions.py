"""Version order and Triton's version policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.models.versions import VersionPolicy, is_safe_name, is_version_name, latest, read_policy, version_key


def test_numeric_and_semver_order() -> None:
    assert sorted(["10", "9", "1"], key=version_key) == ["1", "9", "10"]
    assert sorted(["1.10.0", "1.2.0", "1.2.0-rc1", "2", "1.2.0-rc10", "1.2.0-rc2"], key=version_key) == [
        "1.2.0-rc1",
        "1.2.0-rc10",
        "1.2.0-rc2",  # pre-release identifiers compare as text when they are not numbers
        "1.2.0",
        "1.10.0",
        "2",
    ]
    assert latest(["1", "3", "2"]) == "3"
    assert latest([]) is None


def test_version_names() -> None:
    assert is_version_name("3") and is_version_name("1.2.0") and is_version_name("v2")
    assert not is_version_name("latest") and not is_version_name("..")
    assert is_safe_name("pretrained") and not is_safe_name("..") and not is_safe_name("a/b") and not is_safe_name("")


def test_policies_select() -> None:
    available = ["1", "2", "10", "3"]
    assert VersionPolicy().select(available) == ["10"]
    assert VersionPolicy.parse({"latest": {"num_versions": 2}}).select(available) == ["3", "10"]
    assert VersionPolicy.parse({"all": {}}).select(available) == ["1", "2", "3", "10"]
    assert VersionPolicy.parse({"specific": {"versions": [1, "3", "7"]}}).select(available) == ["1", "3"]


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"latest": {"num_versions": 0}},
        {"specific": {"versions": []}},
        {"newest": {}},
        [],
        {"all": {}, "latest": {}},
    ],
)
def test_bad_policies_are_refused_with_a_reason(raw: object) -> None:
    with pytest.raises(ValueError, match="version_policy"):
        VersionPolicy.parse(raw)


def test_the_policy_file_wins_over_the_card(tmp_path: Path) -> None:
    assert read_policy(tmp_path) == VersionPolicy()
    assert read_policy(tmp_path, {"all": {}}).kind == "all"
    (tmp_path / "version_policy.json").write_text(json.dumps({"latest": {"num_versions": 3}}))
    assert read_policy(tmp_path, {"all": {}}) == VersionPolicy("latest", 3)
