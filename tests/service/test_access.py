"""The request-id rule both transports share: a sane offered id is kept, anything else replaced."""

from __future__ import annotations

from service.access import request_id


def test_the_first_sane_offered_id_is_kept() -> None:
    assert request_id("abc-123") == "abc-123"
    assert request_id(None, "", "oip.id:7") == "oip.id:7"
    assert request_id("x" * 128) == "x" * 128


def test_anything_else_gets_a_new_id() -> None:
    for bad in ("", "x" * 129, "a b", "abc\n", "é", None, 42):
        new = request_id(bad)
        assert new != bad and len(new) == 32 and int(new, 16) >= 0
