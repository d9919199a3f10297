"""The registry and the control loop together, over a real folder and real ONNX Runtime sessions: swaps publish
once warm, retire after their last request, failures never spread, and explicit mode is the only one that
takes load / unload."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from service.errors import Draining, ModelControlRefused, ModelLoadFailed, ModelNotFound, NotReady
from service.models.control import ModelControl
from service.models.registry import State, VersionRegistry
from service.models.sources import LocalSource
from service.observability import ServiceMetrics
from service.settings import Settings
from tests.support.onnx_models import RED_IS_CAT, build_colour_classifier, write_version_dir

RED = np.zeros((3, 32, 32), dtype=np.float32)
RED[0] = 1.0


def run(case: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(case(), 60))  # type: ignore[arg-type]


def make(root: Path, mode: str = "poll", **settings: Any) -> tuple[ModelControl, VersionRegistry, ServiceMetrics]:
    config = Settings(model_dir=root, model_control=mode, model_poll_s=3600, providers="cpu", **settings)
    metrics = ServiceMetrics()
    registry = VersionRegistry(config, metrics)
    return ModelControl(config, registry, LocalSource(root), metrics), registry, metrics


def sample(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def states(registry: VersionRegistry, name: str) -> dict[str, tuple[State, str]]:
    return {e.version: (e.state, e.reason) for e in registry.index() if e.name == name}


def test_poll_swaps_versions_and_retires_the_old_one_after_its_last_request(tmp_path: Path) -> None:
    write_version_dir(tmp_path, "m", "1")

    async def case() -> None:
        control, registry, metrics = make(tmp_path)
        await control.start()
        assert control.ready and control.ready_names() == ["m"]
        held = registry.acquire("m")
        assert held.version == "1"
        # Version 2 answers the opposite way, so which one computed an answer shows in the answer too.
        write_version_dir(tmp_path, "m", "2", model=build_colour_classifier(-RED_IS_CAT))
        await control.refresh(None, adopt=True)
        assert registry.latest("m") is not None and registry.latest("m").version == "2"  # type: ignore[union-attr]
        assert list(registry.serving("m")) == ["2"]
        assert held.state is State.UNLOADING and states(registry, "m")["1"][0] is State.UNLOADING
        # The request that holds version 1 still gets its answer from version 1.
        row = await held.model.batcher.submit(RED)
        assert int(np.argmax(row)) == 0
        with registry.lease("m") as new:
            assert new.version == "2"
            assert int(np.argmax(await new.model.batcher.submit(RED))) == 1
        registry.release(held)
        assert await registry.drained(held, 10)
        with pytest.raises(Draining):  # closed: its batcher takes no more work
            await held.model.batcher.submit(RED)
        assert states(registry, "m")["1"] == (State.UNAVAILABLE, "not in the version policy")
        assert sample(metrics, "catdog_model_unloads_total", model="m", version="1") == 1
        assert sample(metrics, "catdog_model_loads_total", model="m", version="2", outcome="loaded") == 1
        assert sample(metrics, "catdog_model_versions_ready", model="m") == 1
        assert sample(metrics, "catdog_model_load_duration_seconds_count", model="m", phase="warmup") == 2
        await control.stop()

    run(case)


def test_a_broken_version_never_serves_and_the_one_before_keeps_serving(tmp_path: Path) -> None:
    write_version_dir(tmp_path, "m", "1")
    write_version_dir(tmp_path, "other", "1")

    async def case() -> None:
        control, registry, metrics = make(tmp_path)
        await control.start()
        broken = write_version_dir(tmp_path, "m", "2")
        (broken / "model.onnx").write_bytes(b"not the file the card hashed")
        write_version_dir(tmp_path, "other", "2")
        await control.refresh(None, adopt=True)
        assert list(registry.serving("m")) == ["1"]  # the stand-in for the version that failed
        state, reason = states(registry, "m")["2"]
        assert state is State.UNAVAILABLE and "sha256" in reason
        assert list(registry.serving("other")) == ["2"]  # one bad model does not stop the others
        assert sample(metrics, "catdog_model_loads_total", model="m", version="2", outcome="failed_verify") == 1
        with pytest.raises(NotReady, match="sha256"):
            registry.acquire("m", "2")
        # Within its backoff the same files are not tried again; changed files are, at once.
        await control.refresh(None, adopt=True)
        assert sample(metrics, "catdog_model_loads_total", model="m", version="2", outcome="failed_verify") == 1
        write_version_dir(tmp_path, "m", "2")
        await control.refresh(None, adopt=True)
        assert list(registry.serving("m")) == ["2"]
        assert states(registry, "m")["2"] == (State.READY, "")
        await control.stop()

    run(case)


@pytest.mark.parametrize(
    ("breakage", "phase"),
    [
        ("card-version", "verify"),
        ("graph", "session"),
        ("labels", "warmup"),
        ("too-big", "verify"),
    ],
)
def test_every_failing_phase_is_counted_and_explained(tmp_path: Path, breakage: str, phase: str) -> None:
    folder = write_version_dir(
        tmp_path, "m", "1", labels=("cat", "dog", "other") if breakage == "labels" else ("cat", "dog")
    )
    if breakage == "card-version":
        card = (folder / "model.json").read_text().replace('"version": "1"', '"version": "7"')
        (folder / "model.json").write_text(card)
    elif breakage == "graph":  # the card names an input the graph lacks: the session refuses it
        card = (folder / "model.json").read_text().replace('"name": "input"', '"name": "pixels"')
        (folder / "model.json").write_text(card)

    async def case() -> None:
        extra = {"model_max_bytes": 100} if breakage == "too-big" else {}
        control, registry, metrics = make(tmp_path, **extra)
        await control.start()
        assert not control.ready
        assert registry.serving("m") == {}
        state, reason = states(registry, "m")["1"]
        assert state is State.UNAVAILABLE and reason
        assert sample(metrics, "catdog_model_loads_total", model="m", version="1", outcome=f"failed_{phase}") == 1
        await control.stop()

    run(case)


def test_removed_versions_and_models_unload_in_poll_mode(tmp_path: Path) -> None:
    for version in ("1", "2"):
        write_version_dir(tmp_path, "m", version)
    write_version_dir(tmp_path, "gone", "1")
    (tmp_path / "m" / "version_policy.json").write_text('{"all": {}}')

    async def case() -> None:
        control, registry, _ = make(tmp_path)
        await control.start()
        assert sorted(registry.serving("m")) == ["1", "2"]
        shutil.rmtree(tmp_path / "m" / "2")
        shutil.rmtree(tmp_path / "gone")
        await control.refresh(None, adopt=True)
        assert list(registry.serving("m")) == ["1"]
        assert states(registry, "m")["2"][1] == "removed from the repository"
        assert registry.serving("gone") == {}
        with pytest.raises(ModelNotFound):
            registry.acquire("gone")
        await control.stop()

    run(case)


def test_explicit_mode_loads_and_unloads_only_when_asked(tmp_path: Path) -> None:
    write_version_dir(tmp_path, "a", "1")
    write_version_dir(tmp_path, "b", "1")

    async def case() -> None:
        control, registry, _ = make(tmp_path, "explicit", model_load="a")
        await control.start()
        assert control.ready_names() == ["a"]
        assert states(registry, "b")[""] == (State.UNAVAILABLE, "not loaded")
        with pytest.raises(NotReady):
            registry.acquire("b")
        await control.load("b")
        assert registry.acquire("b").version == "1"
        write_version_dir(tmp_path, "b", "2")
        await asyncio.sleep(0)
        assert registry.latest("b").version == "1"  # type: ignore[union-attr]  # nothing polls in explicit mode
        await control.load("b")  # a load reads the repository as it is now
        assert registry.latest("b").version == "2"  # type: ignore[union-attr]
        await control.unload("b")
        assert registry.serving("b") == {}
        with pytest.raises(ModelNotFound):
            await control.load("nope")
        broken = write_version_dir(tmp_path, "c", "1")
        (broken / "model.onnx").write_bytes(b"broken")
        with pytest.raises(ModelLoadFailed, match="sha256"):
            await control.load("c")
        assert control.ready_names() == ["a"]
        await control.stop()

    run(case)


@pytest.mark.parametrize("mode", ["none", "poll"])
def test_load_and_unload_are_refused_outside_explicit_mode(tmp_path: Path, mode: str) -> None:
    write_version_dir(tmp_path, "a", "1")

    async def case() -> None:
        control, registry, _ = make(tmp_path, mode)
        await control.start()
        with pytest.raises(ModelControlRefused, match="explicit"):
            await control.load("a")
        with pytest.raises(ModelControlRefused, match="explicit"):
            await control.unload("a")
        assert list(registry.serving("a")) == ["1"]
        await control.stop()

    run(case)
