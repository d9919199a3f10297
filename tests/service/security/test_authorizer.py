"""The access policy (service/security/authorizer.py), independent of any transport."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from service.security.authorizer import AccessMetrics, Authorizer, Outcome, credential_from
from service.security.keys import KeysFileError, Scope


def write_keys(path: Path, **keys: tuple[str, list[str]]) -> Path:
    entries = [
        {"name": name, "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": scopes}
        for name, (key, scopes) in keys.items()
    ]
    path.write_text(json.dumps({"keys": entries}))
    return path


def test_without_a_file_inference_and_metrics_are_open_and_admin_is_refused() -> None:
    authorizer = Authorizer.from_file(None, 2.0)
    assert not authorizer.keys_required
    assert authorizer.check(None, Scope.INFER).allowed
    assert authorizer.check(None, Scope.METRICS).allowed
    admin = authorizer.check("anything", Scope.ADMIN)
    assert admin.outcome is Outcome.FORBIDDEN and admin.reason == "admin_disabled"


def test_with_a_file_every_scope_needs_its_key(tmp_path: Path) -> None:
    path = write_keys(tmp_path / "keys.json", ci=("k1", ["infer"]), ops=("k2", ["admin", "metrics"]))
    registry = CollectorRegistry()
    authorizer = Authorizer.from_file(path, 2.0, AccessMetrics(registry))
    assert registry.get_sample_value("catdog_api_keys") == 2
    for scope in Scope:
        missing = authorizer.check(None, scope)
        assert (missing.outcome, missing.reason) == (Outcome.UNAUTHENTICATED, "missing_key")
        unknown = authorizer.check("nope", scope)
        assert (unknown.outcome, unknown.reason) == (Outcome.UNAUTHENTICATED, "unknown_key")
    allowed = authorizer.check("k1", Scope.INFER)
    assert allowed.allowed and allowed.key_name == "ci"
    wrong = authorizer.check("k1", Scope.ADMIN)
    assert (wrong.outcome, wrong.reason, wrong.key_name) == (Outcome.FORBIDDEN, "wrong_scope", "ci")
    assert "k1" not in wrong.message
    assert authorizer.check("k2", Scope.ADMIN).allowed
    assert authorizer.check("k2", Scope.METRICS).allowed
    assert not authorizer.check("k2", Scope.INFER).allowed
    assert authorizer.check("", Scope.INFER).reason == "unknown_key"  # a header that held no bearer token


def test_refusals_are_counted_by_transport_and_reason(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    authorizer = Authorizer.from_file(
        write_keys(tmp_path / "k.json", ci=("k1", ["infer"])), 2.0, AccessMetrics(registry)
    )
    for credential in (None, "bad", "k1"):
        authorizer.count("rest", authorizer.check(credential, Scope.METRICS))
    authorizer.count("grpc", authorizer.check("k1", Scope.INFER))
    value = registry.get_sample_value
    assert value("catdog_access_refused_total", {"transport": "rest", "reason": "missing_key"}) == 1
    assert value("catdog_access_refused_total", {"transport": "rest", "reason": "unknown_key"}) == 1
    assert value("catdog_access_refused_total", {"transport": "rest", "reason": "wrong_scope"}) == 1
    assert value("catdog_access_refused_total", {"transport": "grpc", "reason": "missing_key"}) is None


def test_a_broken_file_at_start_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text('{"keys": [')
    with pytest.raises(KeysFileError):
        Authorizer.from_file(path, 2.0)


def test_a_broken_rewrite_keeps_the_old_keys_and_counts_it(tmp_path: Path) -> None:
    path = write_keys(tmp_path / "keys.json", ci=("k1", ["infer"]))
    registry = CollectorRegistry()
    authorizer = Authorizer.from_file(path, 0.001, AccessMetrics(registry))
    path.write_text("{ not json")
    assert authorizer._keys is not None and authorizer._keys.refresh() is False
    assert authorizer.check("k1", Scope.INFER).allowed
    assert registry.get_sample_value("catdog_api_keys_reload_failures_total") == 1
    write_keys(path, ci2=("k9", ["infer"]))
    assert authorizer._keys.refresh() is True
    assert authorizer.check("k9", Scope.INFER).key_name == "ci2"
    assert authorizer.check("k1", Scope.INFER).reason == "unknown_key"
    assert registry.get_sample_value("catdog_api_keys") == 1


@pytest.mark.parametrize(
    ("authorization", "api_key", "expected"),
    [
        ("Bearer abc", None, "abc"),
        ("bearer   abc ", None, "abc"),
        ("BEARER abc", "other", "abc"),
        (None, "xyz", "xyz"),
        ("Basic dXNlcjpwYXNz", None, ""),
        ("Bearer", None, ""),
        (None, None, None),
        ("", "", None),
    ],
)
def test_credentials_from_headers(authorization: str | None, api_key: str | None, expected: str | None) -> None:
    assert credential_from(authorization, api_key) == expected
