"""The model repository API (Triton's model_repository extension), protocol-free: the REST routes
(service/rest/routes/repository.py) and the gRPC methods (service/grpc/servicer.py) call this.

It changes what the server runs, so access control's doors require the `admin` scope for it (service/security/:
`/v2/repository/...` and gRPC `Repository*`; without CATDOG_API_KEYS_FILE it is refused to everyone). The index
answers in every control mode; load and unload act only in explicit mode (ModelControlRefused, 400, elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from service.models.store import ModelStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class IndexItem:
    name: str
    version: str
    state: str
    reason: str


class RepositoryApi:
    def __init__(self, store: ModelStore) -> None:
        self.store = store

    def index(self, *, ready_only: bool = False) -> list[IndexItem]:
        return [IndexItem(e.name, e.version, e.state.value, e.reason) for e in self.store.index(ready_only=ready_only)]

    async def load(self, name: str) -> None:
        log.info("repository_load", model=name)
        await self.store.control.load(name)

    async def unload(self, name: str) -> None:
        log.info("repository_unload", model=name)
        await self.store.control.unload(name)
