"""The versions that serve, and the leases requests hold on them.

Each model name maps to one immutable `ModelTable` (its READY versions and the latest of them). A request
`acquire`s one READY version and holds it for its whole life; a swap builds a new table and publishes it with one
assignment, so a request sees the old version or the new one, never a half-loaded one. A version leaving the table
turns UNLOADING: it takes no new requests, and its batcher and ONNX Runtime session close when the last request
holding it releases it. Everything here runs on the event loop (no locks: an assignment is atomic to it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog

from service.dataplane.batching import MicroBatcher
from service.dataplane.repository import ReadyModel
from service.errors import ModelNotFound, NotReady
from service.models.loader import LoadedVersion
from service.models.versions import version_key
from service.observability import ServiceMetrics
from service.settings import Settings

log = structlog.get_logger(__name__)


QUIET_REASONS = ("not loaded", "unloaded")
"""UNAVAILABLE because nobody asked for it: no warning."""


def release_memory() -> None:
    """Give a closed session's memory back to the system: collect what only cycles still hold, then ask glibc to
    return its free heap pages (freed ONNX Runtime weights otherwise stay in the process's arenas: measured +85 MiB
    RSS after 20 swaps of an 18 MB model without this). A no-op where there is no glibc."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class State(enum.StrEnum):
    """Triton's model states, per version."""

    LOADING = "LOADING"
    READY = "READY"
    UNLOADING = "UNLOADING"
    UNAVAILABLE = "UNAVAILABLE"


@dataclass(eq=False, slots=True)
class ServedVersion:
    name: str
    version: str
    fingerprint: str
    model: ReadyModel
    state: State = State.READY
    refs: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True, slots=True)
class ModelTable:
    versions: dict[str, ServedVersion]
    latest: ServedVersion


@dataclass(frozen=True, slots=True)
class IndexEntry:
    name: str
    version: str
    state: State
    reason: str = ""


class VersionRegistry:
    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._tables: dict[str, ModelTable] = {}
        self._notes: dict[tuple[str, str], IndexEntry] = {}
        """Versions that do not serve: LOADING, UNAVAILABLE (with why), UNLOADING (draining)."""
        self._known: set[str] = set()
        self._closing: set[asyncio.Task[None]] = set()

    # Requests.
    def acquire(self, name: str, version: str | None = None) -> ServedVersion:
        """One READY version (the latest when `version` is None), held until `release`. ModelNotFound (404) for
        a name or version the repository lacks, NotReady (503) for one that is loading or failed."""
        table = self._tables.get(name)
        if table is not None:
            served = table.latest if version is None else table.versions.get(version)
            if served is not None:
                served.refs += 1
                return served
        if name not in self._known:
            raise ModelNotFound(f"no model named {name!r}; see GET /v1/models")
        if version is None:
            raise NotReady(f"model {name!r} is not ready: {self._why(name)}")
        note = self._notes.get((name, version))
        if note is None:
            serving = sorted(table.versions, key=version_key) if table else []
            raise ModelNotFound(f"model {name!r} has no version {version!r} (it serves {serving})")
        raise NotReady(f"model {name!r} version {version!r} is not ready: {note.reason or note.state.lower()}")

    def release(self, served: ServedVersion) -> None:
        served.refs -= 1
        if served.refs == 0 and served.state is State.UNLOADING:
            self._close_soon(served)

    @contextlib.contextmanager
    def lease(self, name: str, version: str | None = None) -> Iterator[ServedVersion]:
        served = self.acquire(name, version)
        try:
            yield served
        finally:
            self.release(served)

    # Control.
    def known(self, name: str) -> None:
        """A model the repository holds (listed even while nothing of it serves)."""
        self._known.add(name)
        self.metrics.model_ready.labels(name).set(1 if name in self._tables else 0)

    def forget(self, name: str) -> None:
        self._known.discard(name)
        for key in [k for k in self._notes if k[0] == name and self._notes[k].state is not State.UNLOADING]:
            del self._notes[key]

    def note(self, name: str, version: str, state: State, reason: str = "") -> None:
        """A version that does not serve (or not yet): shown in the index, logged once per change."""
        self._known.add(name)
        old = self._notes.get((name, version))
        entry = IndexEntry(name, version, state, reason)
        self._notes[(name, version)] = entry
        if old != entry:
            self._log_state(entry)

    def clear(self, name: str, version: str) -> None:
        self._notes.pop((name, version), None)

    def publish(self, name: str, version: str, fingerprint: str, loaded: LoadedVersion) -> ServedVersion:
        """Start the loaded version's batcher and put it in its model's table with one assignment; an older
        instance of the same version (its files changed) is retired once this one serves."""
        batcher = MicroBatcher(
            name,
            loaded.runtime.run,
            max_batch_size=self.settings.batch_max_size,
            max_wait_s=self.settings.batch_max_wait_ms / 1000,
            queue_max=self.settings.queue_max,
            observer=self.metrics.for_model(name),
        )
        batcher.start()
        model = ReadyModel(name, loaded.card, loaded.runtime, batcher, loaded.precision, loaded.sha256)
        served = ServedVersion(name, version, fingerprint, model)
        table = self._tables.get(name)
        versions = {**(table.versions if table else {}), version: served}
        previous = table.versions.get(version) if table else None
        self._tables[name] = ModelTable(versions, versions[max(versions, key=version_key)])
        self._known.add(name)
        self._notes.pop((name, version), None)
        self._log_state(IndexEntry(name, version, State.READY))
        self._observe(name)
        self.metrics.model_unloads.labels(name, version)  # exported at 0 from the start, for rates and dashboards
        self.metrics.model_info.labels(name, version, model.sha256, model.provider, model.precision).set(1)
        if previous is not None:
            self._retire(previous, "replaced by changed files")
        return served

    def unpublish(self, name: str, version: str, reason: str = "unloaded") -> bool:
        """Take a version out of service: no new requests from now on; it closes when its last one finishes."""
        table = self._tables.get(name)
        served = table.versions.get(version) if table else None
        if table is None or served is None:
            return False
        versions = {v: s for v, s in table.versions.items() if v != version}
        if versions:
            self._tables[name] = ModelTable(versions, versions[max(versions, key=version_key)])
        else:
            del self._tables[name]
        self._retire(served, reason)
        self._observe(name)
        return True

    def serving(self, name: str) -> dict[str, ServedVersion]:
        table = self._tables.get(name)
        return dict(table.versions) if table else {}

    def latest(self, name: str) -> ServedVersion | None:
        table = self._tables.get(name)
        return table.latest if table else None

    def names(self) -> list[str]:
        return sorted(self._known | set(self._tables))

    def index(self) -> list[IndexEntry]:
        """Every version the registry knows, serving or not, by name then version."""
        entries = {(n, v): IndexEntry(n, v, State.READY) for n, t in self._tables.items() for v in t.versions}
        for key, note in self._notes.items():
            entries.setdefault(key, note)
        listed = {n for n, _ in entries}
        for name in self._known - listed:  # known, nothing loaded nor tried (explicit mode, not loaded yet)
            entries[(name, "")] = IndexEntry(name, "", State.UNAVAILABLE, "not loaded")
        return [entries[k] for k in sorted(entries, key=lambda k: (k[0], version_key(k[1])))]

    def reason(self, name: str) -> str:
        return self._why(name)

    async def stop(self) -> None:
        """Close every version (the service is stopping: nothing is left to drain to)."""
        for name in list(self._tables):
            for version in list(self._tables[name].versions):
                self.unpublish(name, version, "the service is stopping")
        for task in list(self._closing):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def drained(self, served: ServedVersion, timeout_s: float) -> bool:
        """Wait until a retired version has closed (its last request finished)."""
        try:
            async with asyncio.timeout(timeout_s):
                await served.closed.wait()
        except TimeoutError:
            return False
        return True

    # Internals.
    def _why(self, name: str) -> str:
        reasons = [n.reason or n.state.lower() for (m, _), n in self._notes.items() if m == name]
        return "; ".join(reasons) if reasons else "still loading"

    def _retire(self, served: ServedVersion, reason: str) -> None:
        served.state = State.UNLOADING
        entry = IndexEntry(served.name, served.version, State.UNLOADING, reason)
        if (served.name, served.version) not in self._serving_keys():  # a reload: the new instance shows
            self._notes[(served.name, served.version)] = entry
        self._log_state(entry)
        if served.refs == 0:
            self._close_soon(served)

    def _close_soon(self, served: ServedVersion) -> None:
        task = asyncio.get_running_loop().create_task(self._close(served), name=f"close-{served.name}")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, served: ServedVersion) -> None:
        model = served.model
        started = time.perf_counter()
        await model.batcher.stop()  # its thread ends; the session's memory goes with the last reference to it
        served.state = State.UNAVAILABLE
        await asyncio.to_thread(release_memory)
        served.closed.set()
        self.metrics.model_unloads.labels(served.name, served.version).inc()
        with contextlib.suppress(KeyError):
            self.metrics.model_info.remove(served.name, served.version, model.sha256, model.provider, model.precision)
        key = (served.name, served.version)
        note = self._notes.get(key)
        if note is not None and note.state is State.UNLOADING and key not in self._serving_keys():
            self.note(served.name, served.version, State.UNAVAILABLE, note.reason)
        elif note is not None and note.state is State.UNLOADING:
            del self._notes[key]  # the same version serves again (a reload): nothing to show
        log.info(
            "model_version_closed", model=served.name, version=served.version, seconds=time.perf_counter() - started
        )

    def _serving_keys(self) -> set[tuple[str, str]]:
        return {(n, v) for n, t in self._tables.items() for v in t.versions}

    def _observe(self, name: str) -> None:
        count = len(self._tables[name].versions) if name in self._tables else 0
        self.metrics.versions_ready.labels(name).set(count)
        self.metrics.model_ready.labels(name).set(1 if count else 0)

    @staticmethod
    def _log_state(entry: IndexEntry) -> None:
        failed = entry.state is State.UNAVAILABLE and entry.reason not in QUIET_REASONS
        level = log.warning if failed else log.info
        level(
            "model_version_state",
            model=entry.name,
            version=entry.version,
            state=entry.state.value,
            reason=entry.reason or None,
        )
