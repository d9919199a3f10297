"""File watch (service/security/watch.py): edits in place, the kubelet's ..data swap, broken versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.security.watch import Reloading
from tests.support.certs import SecretVolume


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def read_json(path: Path) -> object:
    return json.loads(path.read_text())


def test_the_kubelets_symlink_swap_is_seen_after_the_interval(tmp_path: Path) -> None:
    volume = SecretVolume(tmp_path / "secret")
    volume.publish({"keys.json": b'{"v": 1}'})
    clock = Clock()
    watched = Reloading(
        "keys", [volume.path("keys.json")], lambda: read_json(volume.path("keys.json")), 2.0, clock=clock
    )
    assert watched.current() == {"v": 1}
    volume.publish({"keys.json": b'{"v": 2}'})  # same size, maybe the same mtime: only the inode differs
    clock.now = 1.9
    assert watched.current() == {"v": 1}  # not looked at before the interval
    clock.now = 2.0
    assert watched.current() == {"v": 2}
    assert watched.reloads == 1


def test_an_edit_in_place_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"v": 1}')
    watched = Reloading("keys", [path], lambda: read_json(path), 1.0, clock=Clock())
    path.write_text('{"v": 22}')
    assert watched.refresh() is True
    assert watched.value == {"v": 22}
    assert watched.refresh() is False  # unchanged: not read again


def test_a_broken_version_keeps_the_previous_value_until_a_good_one(tmp_path: Path) -> None:
    volume = SecretVolume(tmp_path / "secret")
    volume.publish({"keys.json": b'{"v": 1}'})
    failures: list[int] = []
    path = volume.path("keys.json")
    watched = Reloading("keys", [path], lambda: read_json(path), 1.0, on_failure=lambda: failures.append(1))
    volume.publish({"keys.json": b'{"v": '})
    assert watched.refresh() is False
    assert watched.value == {"v": 1}
    assert watched.refresh() is False  # the same broken version is reported once
    assert failures == [1]
    volume.publish({"keys.json": b'{"v": 3}'})
    assert watched.refresh() is True
    assert watched.value == {"v": 3}


def test_a_removed_file_keeps_the_previous_value(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"v": 1}')
    watched = Reloading("keys", [path], lambda: read_json(path), 1.0)
    path.unlink()
    assert watched.refresh() is False
    assert watched.value == {"v": 1}


def test_a_bad_file_at_start_raises(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("{")
    with pytest.raises(json.JSONDecodeError):
        Reloading("keys", [path], lambda: read_json(path), 1.0)
