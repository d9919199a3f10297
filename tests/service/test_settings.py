"""Settings: every knob is an env var with the CATDOG_ prefix, validated, and documented in docs/operations.md."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.settings import Settings
from tests.support.server import REPO_ROOT


def test_every_setting_is_documented() -> None:
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    missing = [name for name in Settings.model_fields if f"CATDOG_{name.upper()}" not in operations]
    assert not missing, missing


def test_env_vars_are_read_and_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATDOG_PORT", "9000")
    monkeypatch.setenv("CATDOG_PROVIDERS", "cpu")
    settings = Settings()
    assert (settings.port, settings.providers) == (9000, "cpu")
    monkeypatch.setenv("CATDOG_PORT", "seventy")
    with pytest.raises(ValidationError, match="port"):
        Settings()
    monkeypatch.setenv("CATDOG_PORT", "8000")
    monkeypatch.setenv("CATDOG_QUEUE_MAX", "0")
    with pytest.raises(ValidationError, match="queue_max"):
        Settings()
