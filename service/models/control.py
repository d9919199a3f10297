"""Keeps the registry in step with the repository, in Triton's three model-control modes:

- `none`: read once at start (catdog's behaviour before versions);
- `poll`: re-read every CATDOG_MODEL_POLL_S: new versions load, versions gone (or out of the policy) unload,
  versions whose files changed reload; a version that fails is retried with backoff (sooner when its files change),
  and one bad model never stops the others;
- `explicit`: only `load(name)` / `unload(name)` (the repository API) change what serves; CATDOG_MODEL_LOAD names
  what loads at start.

A version loads in a worker thread (verify, session, warm-up) while the one before it keeps serving, and is
published only once warm; the version it replaces is retired after that, so the served version moves once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import structlog

from service.dataplane.runtime import resolve_providers
from service.errors import ModelControlRefused, ModelLoadFailed, ModelNotFound
from service.models.layout import ModelLayout, scan
from service.models.loader import PHASES, LoadFailed, load_version
from service.models.registry import State, VersionRegistry
from service.models.sources import Source, SyncResult
from service.models.versions import version_key
from service.observability import ServiceMetrics
from service.settings import Settings

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 300.0


@dataclass(slots=True)
class _Failure:
    fingerprint: str
    attempts: int
    retry_at: float


class ModelControl:
    def __init__(self, settings: Settings, registry: VersionRegistry, source: Source, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.mode = settings.model_control
        self.registry = registry
        self.source = source
        self.metrics = metrics
        self.layout: dict[str, ModelLayout] = {}
        self.managed: set[str] = set()
        """Models asked to serve: every model in the repository, or (explicit) those loaded."""
        self.started = False
        self.offline: str | None = None
        self._failures: dict[tuple[str, str], _Failure] = {}
        self._refused: dict[tuple[str, str], str] = {}
        self._lock = asyncio.Lock()
        self._poller: asyncio.Task[None] | None = None
        self._providers: list[str] | None = None
        self.only: set[str] | None = None
        """Only these models exist (the CLI's `predict --model`)."""

    # Life.
    async def start(self) -> None:
        """First load (in the background of serving: /livez answers meanwhile); then polling, in poll mode."""
        self._providers = resolve_providers(self.settings.providers)
        if self.mode == "explicit":
            wanted = {n.strip() for n in self.settings.model_load.split(",") if n.strip()}
            await self.refresh(None if "*" in wanted else wanted, adopt=True)
        else:
            await self.refresh(None, adopt=True)
        self.started = True
        log.info("models_loaded", ready=self.ready_names(), failed=self.failures(), mode=self.mode)
        if self.mode == "poll":
            self._poller = asyncio.create_task(self._poll(), name="model-poll")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.registry.stop()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.settings.model_poll_s)
            try:
                await self.refresh(None, adopt=True)
            except Exception:  # a poll never dies: the next one tries again
                log.exception("model_poll_failed")

    # The repository API (explicit mode).
    async def load(self, name: str) -> None:
        """(Re)load a model's policy versions from the repository as it is now; ModelLoadFailed when none is ready."""
        self._explicit_only("load")
        self.managed.add(name)
        await self.refresh({name}, adopt=False, force=True)
        if name not in self.layout:
            self.managed.discard(name)
            raise ModelNotFound(f"no model named {name!r} in the repository ({self.source.description})")
        if not self.registry.serving(name):
            raise ModelLoadFailed(f"failed to load {name!r}: {self.registry.reason(name)}")

    async def unload(self, name: str) -> None:
        """Stop serving every version of a model; each closes when its last request finishes."""
        self._explicit_only("unload")
        if name not in self.layout and not self.registry.serving(name):
            raise ModelNotFound(f"no model named {name!r} in the repository ({self.source.description})")
        async with self._lock:
            self.managed.discard(name)
            for version in list(self.registry.serving(name)):
                self.registry.unpublish(name, version, "unloaded")

    def _explicit_only(self, action: str) -> None:
        if self.mode != "explicit":
            raise ModelControlRefused(
                f"model {action} is only available in explicit model control mode "
                f"(CATDOG_MODEL_CONTROL=explicit; this server runs {self.mode!r})"
            )

    # Reconciling.
    async def refresh(self, names: set[str] | None, *, adopt: bool, force: bool = False) -> None:
        """Sync the source, scan it, and bring the given models (None: every managed one) in step. `adopt`: every
        model found becomes managed (none / poll modes, and explicit's start with CATDOG_MODEL_LOAD=*)."""
        async with self._lock:
            result = await asyncio.to_thread(self.source.sync)
            self.offline = result.offline
            layout = await asyncio.to_thread(scan, result.root, self.only)
            if result.offline and not layout and self.layout:
                layout = self.layout  # the cache is gone too: keep what serves
            self.layout = layout
            for name in layout:
                self.registry.known(name)
                if self.mode == "explicit" and name not in self.managed and not self.registry.serving(name):
                    self.registry.note(name, "", State.UNAVAILABLE, "not loaded")
            if adopt and self.mode != "explicit":
                self.managed = set(layout)
            elif adopt and names is None:
                self.managed |= set(layout)
            elif adopt and names:
                self.managed |= names & set(layout)
            targets = (self.managed if names is None else names & self.managed) | self._gone(layout, names)
            await asyncio.gather(*(self._reconcile_safely(n, result, force) for n in sorted(targets)))

    def _gone(self, layout: dict[str, ModelLayout], names: set[str] | None) -> set[str]:
        """Models serving that the repository no longer has (poll mode unloads them)."""
        if self.mode != "poll":
            return set()
        return {n for n in self.registry.names() if n not in layout and (names is None or n in names)}

    async def _reconcile_safely(self, name: str, result: SyncResult, force: bool) -> None:
        try:
            await self._reconcile(name, result, force)
        except Exception:
            log.exception("model_reconcile_failed", model=name)

    async def _reconcile(self, name: str, result: SyncResult, force: bool) -> None:
        layout = self.layout.get(name)
        if layout is None:  # gone from the repository
            for version in list(self.registry.serving(name)):
                self.registry.unpublish(name, version, "removed from the repository")
            self.registry.forget(name)
            self.managed.discard(name)
            return
        for (model, folder), reason in result.refused.items():
            if model == name and self._refused.get((model, folder)) != reason:
                self._refused[(model, folder)] = reason
                self.registry.note(name, folder, State.UNAVAILABLE, reason)
                self.metrics.model_loads.labels(name, folder, "failed_download").inc()
        if layout.policy_error:
            self.registry.note(name, "", State.UNAVAILABLE, layout.policy_error)
        else:
            self.registry.clear(name, "")
        wanted = layout.wanted()
        for version in wanted:
            await self._load_one(layout, version, result, force)
        serving = self.registry.serving(name)
        # Versions out of the policy go, except as stand-ins for wanted versions that failed to load.
        missing = sum(1 for v in wanted if v not in serving)
        extra = sorted((v for v in serving if v not in wanted), key=version_key, reverse=True)
        for version in extra[missing:]:
            reason = "removed from the repository" if version not in layout.versions else "not in the version policy"
            self.registry.unpublish(name, version, reason)
        for model, version in [k for k in self._failures if k[0] == name and k[1] not in wanted]:
            del self._failures[(model, version)]
            self.registry.clear(model, version)

    async def _load_one(self, layout: ModelLayout, version: str, result: SyncResult, force: bool) -> None:
        name, folder = layout.name, layout.versions[version]
        current = self.registry.serving(name).get(version)
        if current is not None and current.fingerprint == folder.fingerprint:
            return
        failure = self._failures.get((name, version))
        now = time.monotonic()
        if failure and failure.fingerprint == folder.fingerprint and now < failure.retry_at and not force:
            return
        if current is None:
            self.registry.note(name, version, State.LOADING)
        log.info("model_version_loading", model=name, version=version, reload=current is not None)
        assert self._providers is not None
        try:
            loaded = await asyncio.to_thread(load_version, name, folder, self.settings, self._providers)
        except LoadFailed as exc:
            attempts = failure.attempts + 1 if failure and failure.fingerprint == folder.fingerprint else 1
            backoff = min(self.settings.model_poll_s * 2 ** (attempts - 1), MAX_BACKOFF_S)
            self._failures[(name, version)] = _Failure(folder.fingerprint, attempts, now + backoff)
            self.metrics.model_loads.labels(name, version, f"failed_{exc.phase}").inc()
            reason = exc.reason if current is None else f"reload failed, the earlier files serve: {exc.reason}"
            log.error("model_failed", model=name, version=version, phase=exc.phase, reason=exc.reason)
            if current is None:
                self.registry.note(name, version, State.UNAVAILABLE, reason)
            else:
                log.warning("model_version_reload_failed", model=name, version=version, reason=exc.reason)
            return
        self._failures.pop((name, version), None)
        for phase in PHASES:
            seconds = result.download_s.get(name) if phase == "download" else loaded.seconds.get(phase)
            if seconds is not None:
                self.metrics.model_load_seconds.labels(name, phase).observe(seconds)
        self.registry.publish(name, version, folder.fingerprint, loaded)
        self.metrics.model_loads.labels(name, version, "loaded").inc()
        log.info(
            "model_ready",
            model=name,
            version=version,
            provider=loaded.runtime.provider,
            sha256=loaded.sha256,
            precision=loaded.precision,
            seconds={k: round(v, 4) for k, v in loaded.seconds.items()},
        )

    # Readiness.
    def ready_names(self) -> list[str]:
        return [n for n in sorted(self.managed) if self.registry.serving(n)]

    def failures(self) -> dict[str, str]:
        return {n: self.registry.reason(n) for n in sorted(self.managed) if not self.registry.serving(n)}

    @property
    def loading(self) -> bool:
        return not self.started

    @property
    def ready(self) -> bool:
        """Loaded, and every model asked to serve (require_all_models) or at least one of them has a ready
        version. Explicit mode with nothing asked: ready (there is nothing to wait for)."""
        if not self.started:
            return False
        if not self.managed:
            return self.mode == "explicit"
        if self.settings.require_all_models:
            return not self.failures()
        return bool(self.ready_names())
