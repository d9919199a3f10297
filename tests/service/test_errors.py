"""The error taxonomy is a contract: every rejection reason is documented, every code is unique."""

from __future__ import annotations

import re

from service import errors
from tests.support.server import REPO_ROOT


def _taxonomy() -> list[type[errors.CatdogError]]:
    found = [errors.CatdogError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found[1:]


def test_codes_are_unique_and_statuses_are_errors() -> None:
    classes = _taxonomy()
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), codes
    assert all(400 <= cls.status < 600 for cls in classes)
    assert all(cls.retry_after_s for cls in classes if cls.status == 503)


def test_every_reason_is_documented() -> None:
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", text.split("`reason` values")[1].split("\n\n")[0]))
    reasons = {cls.reason for cls in _taxonomy() if cls.reason}
    assert reasons == documented


def test_every_code_is_in_the_api_reference() -> None:
    api = (REPO_ROOT / "docs" / "api.md").read_text()
    missing = [cls.code for cls in _taxonomy() if f"`{cls.code}`" not in api]
    assert not missing, missing
