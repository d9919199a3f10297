"""The model repository API (Triton's model_repository extension), protocol-free: the REST routes
(service/rest/routes/repository.py) and, once the gRPC service carries its messages, the gRPC methods call this.

It changes what the server runs, so every call needs the admin credential: a bearer token read from
CATDOG_ADMIN_TOKEN_FILE (re-read when the file changes, so a rotated Secret takes effect without a restart). No
file configured: the repository API is off (403). The index answers in every control mode; load and unload act
only in explicit mode (ModelControlRefused, 400, elsewhere)."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

import structlog

from service.errors import AdminRequired, RepositoryApiDisabled
from service.models.store import ModelStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class IndexItem:
    name: str
    version: str
    state: str
    reason: str


class RepositoryApi:
    def __init__(self, store: ModelStore, token_file: Path | None) -> None:
        self.store = store
        self.token_file = token_file
        self._token: tuple[float, str] | None = None

    def authorize(self, authorization: str | None) -> None:
        """`Authorization: Bearer <token>` against the token file; raises RepositoryApiDisabled / AdminRequired."""
        token = self._expected()
        scheme, _, offered = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not offered or not hmac.compare_digest(offered.strip(), token):
            raise AdminRequired("the repository API needs the admin token (Authorization: Bearer <token>)")

    def _expected(self) -> str:
        if self.token_file is None:
            raise RepositoryApiDisabled("the repository API is off: set CATDOG_ADMIN_TOKEN_FILE to enable it")
        try:
            mtime = self.token_file.stat().st_mtime
            if self._token is None or self._token[0] != mtime:
                self._token = (mtime, self.token_file.read_text(encoding="utf-8").strip())
        except OSError as exc:
            log.error("admin_token_unreadable", path=str(self.token_file), error=str(exc))
            raise RepositoryApiDisabled("the repository API is off: the admin token file cannot be read") from None
        if not self._token[1]:
            raise RepositoryApiDisabled("the repository API is off: the admin token file is empty")
        return self._token[1]

    def index(self, *, ready_only: bool = False) -> list[IndexItem]:
        return [IndexItem(e.name, e.version, e.state.value, e.reason) for e in self.store.index(ready_only=ready_only)]

    async def load(self, name: str) -> None:
        log.info("repository_load", model=name)
        await self.store.control.load(name)

    async def unload(self, name: str) -> None:
        log.info("repository_unload", model=name)
        await self.store.control.unload(name)
