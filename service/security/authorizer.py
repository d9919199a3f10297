"""The one access check both transports call: (credential or None, required scope) -> a Decision.

Policy:
- without a keys file (CATDOG_API_KEYS_FILE unset): `infer` and `metrics` are open, as before keys existed, and
  `admin` is refused to everyone (403): an open management API is how model servers get taken over;
- with a keys file: every scoped call needs a key with that scope: none or an unknown one -> 401
  (unauthenticated), a known key without the scope -> 403 (forbidden).
Open calls (probes, the page's own HTML and assets) never reach here: the doors pass them by (scope None).
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge

from service.security.keys import KeySet, Scope, load_keys
from service.security.watch import Reloading


class Outcome(enum.Enum):
    ALLOWED = "allowed"
    UNAUTHENTICATED = "unauthenticated"  # 401 / UNAUTHENTICATED
    FORBIDDEN = "forbidden"  # 403 / PERMISSION_DENIED


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reason: str  # the refusal's metric label: missing_key, unknown_key, wrong_scope, admin_disabled; "" if allowed
    message: str  # what the client is told (never the key)
    key_name: str | None = None  # the matched entry's name, for the access line

    @property
    def allowed(self) -> bool:
        return self.outcome is Outcome.ALLOWED


OPEN = Decision(Outcome.ALLOWED, "", "")
MISSING = Decision(Outcome.UNAUTHENTICATED, "missing_key", "an API key is required")
UNKNOWN = Decision(Outcome.UNAUTHENTICATED, "unknown_key", "the API key is not valid")
ADMIN_DISABLED = Decision(
    Outcome.FORBIDDEN, "admin_disabled", "the management API needs an API key file (CATDOG_API_KEYS_FILE)"
)


class AccessMetrics:
    """Refusals by reason and transport (never by key), and how many keys the file holds now."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.refused = Counter(
            "catdog_access_refused",
            "Calls refused by access control, by transport and reason (missing_key, unknown_key, wrong_scope, "
            "admin_disabled).",
            ["transport", "reason"],
            registry=registry,
        )
        self.keys = Gauge("catdog_api_keys", "API keys in the keys file now (0 without a file).", registry=registry)
        self.reload_failures = Counter(
            "catdog_api_keys_reload_failures",
            "Keys file changes that did not load (previous keys kept).",
            registry=registry,
        )


class Authorizer:
    def __init__(self, keys: Reloading[KeySet] | None, metrics: AccessMetrics | None = None) -> None:
        self._keys = keys
        self.metrics = metrics
        if metrics is not None:
            metrics.keys.set(len(keys.value) if keys is not None else 0)

    @classmethod
    def from_file(cls, path: Path | None, reload_s: float, metrics: AccessMetrics | None = None) -> Authorizer:
        """A bad file at start raises KeysFileError: the service must not start open or locked by accident."""
        if path is None:
            return cls(None, metrics)

        def loaded(keys: KeySet) -> None:
            if metrics is not None:
                metrics.keys.set(len(keys))

        def failed() -> None:
            if metrics is not None:
                metrics.reload_failures.inc()

        keys = Reloading("api_keys", [path], lambda: load_keys(path), reload_s, on_reload=loaded, on_failure=failed)
        return cls(keys, metrics)

    @property
    def keys_required(self) -> bool:
        return self._keys is not None

    async def watch(self) -> None:
        """Look at the keys file once per interval even when no call comes, so a change (or a broken file, and
        its error line and metric) shows at once; calls also look lazily, so this is for promptness only."""
        if self._keys is None:
            return
        while True:
            await asyncio.sleep(self._keys.interval_s)
            self._keys.current()

    def check(self, credential: str | None, scope: Scope) -> Decision:
        if self._keys is None:
            return ADMIN_DISABLED if scope is Scope.ADMIN else OPEN
        if credential is None:
            return MISSING
        if not credential:
            return UNKNOWN
        key = self._keys.current().match(credential)
        if key is None:
            return UNKNOWN
        if scope not in key.scopes:
            return Decision(Outcome.FORBIDDEN, "wrong_scope", f"this API key lacks the {scope.value!r} scope", key.name)
        return Decision(Outcome.ALLOWED, "", "", key.name)

    def count(self, transport: str, decision: Decision) -> None:
        if self.metrics is not None and not decision.allowed:
            self.metrics.refused.labels(transport, decision.reason).inc()


def credential_from(authorization: str | None, api_key: str | None) -> str | None:
    """`Authorization: Bearer <key>` (scheme case-insensitive) or `X-API-Key: <key>`; None when neither is given."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return ""  # present but not a bearer token: an unknown credential, not a missing one
    if api_key:
        return api_key.strip()
    return None
