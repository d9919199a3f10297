"""The model repository as the data plane sees it: ModelRepository's face (`get`, `known`, `models`, `ready`, ...)
over the versioned registry, the control loop and a source.

`get(name, version)` leases one READY version (the latest when no version is asked) for the rest of the request:
the lease is released when the task that serves the request ends (uvicorn runs each HTTP request, grpc.aio each
RPC, in a task of its own), so a version being swapped out closes only after the last request that took it has
answered. Outside a task (nothing to outlive) nothing is held.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from service.dataplane.repository import ReadyModel, ServedModel
from service.errors import ModelNotFound
from service.models.control import ModelControl
from service.models.layout import scan
from service.models.registry import IndexEntry, ServedVersion, State, VersionRegistry
from service.models.sources import LocalSource, open_source
from service.models.versions import version_key
from service.observability import ServiceMetrics
from service.settings import Settings


def cache_dir(settings: Settings) -> Path:
    return settings.model_cache_dir or Path(tempfile.gettempdir()) / "catdog-model-cache"


class ModelStore:
    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.source = open_source(
            settings.model_location,
            cache_dir(settings),
            max_bytes=settings.model_max_bytes,
            timeout_s=settings.model_download_timeout_s,
        )
        self.registry = VersionRegistry(settings, metrics)
        self.control = ModelControl(settings, self.registry, self.source, metrics)

    # Life.
    def discover(self, only: str | None = None) -> None:
        """Names known before anything loads (a local folder only: a remote one is listed by the first sync).
        `only` keeps one model (the CLI's `predict --model`)."""
        if only is not None:
            self.control.only = {only}
        if isinstance(self.source, LocalSource):
            for name in scan(self.source.root, self.control.only):
                self.registry.known(name)

    async def load_all(self) -> None:
        await self.control.start()

    async def stop(self) -> None:
        await self.control.stop()

    # Requests.
    def get(self, name: str, version: str | None = None) -> ReadyModel:
        """One READY version of `name` (the latest when `version` is None), held until the request ends.
        ModelNotFound (404) for an unknown name or version, NotReady (503) while it loads or after it failed."""
        served = self.registry.acquire(name, version)
        self._hold(served)
        return served.model

    def _hold(self, served: ServedVersion) -> None:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        if task is None:
            self.registry.release(served)
            return
        task.add_done_callback(lambda _: self.registry.release(served))

    # What serves.
    def versions(self, name: str) -> dict[str, ReadyModel]:
        """The READY versions of a model, in version order."""
        serving = self.registry.serving(name)
        return {v: serving[v].model for v in sorted(serving, key=version_key)}

    def index(self, *, ready_only: bool = False) -> list[IndexEntry]:
        entries = self.registry.index()
        return [e for e in entries if e.state is State.READY] if ready_only else entries

    def known(self, name: str, version: str | None = None) -> ServedModel:
        """The slot for `name` (its latest ready version, or why none serves), or for one ready version of it;
        ModelNotFound (404) for a name the repository lacks or a version that does not serve."""
        model = self.models.get(name)
        if model is None:
            raise ModelNotFound(f"no model named {name!r}; see GET /v1/models")
        if version:
            served = self.versions(name)
            if version not in served:
                raise ModelNotFound(f"model {name!r} has no ready version {version!r} (it serves {list(served)})")
            return _slot(served[version], model.folder)
        return model

    @property
    def models(self) -> dict[str, ServedModel]:
        """Every model by name: its latest READY version, or a slot saying why none serves."""
        found: dict[str, ServedModel] = {}
        index = self.registry.index()
        for name in self.registry.names():
            folder = Path(self.source.description) / name
            latest = self.registry.latest(name)
            if latest is not None:
                found[name] = _slot(latest.model, folder)
            elif not self.control.started or any(e.state is State.LOADING for e in index if e.name == name):
                found[name] = ServedModel(name, folder)
            else:
                found[name] = ServedModel(name, folder, "failed", self.registry.reason(name))
        return found

    def ready_names(self) -> list[str]:
        return self.control.ready_names()

    def failures(self) -> dict[str, str]:
        return self.control.failures() if self.control.started else {}

    @property
    def loading(self) -> bool:
        return self.control.loading

    @property
    def ready(self) -> bool:
        return self.control.ready


def _slot(model: ReadyModel, folder: Path) -> ServedModel:
    return ServedModel(
        model.name, folder, "ready", None, model.card, model.sha256, model.precision, model.runtime, model
    )
