"""The DataPlane answers every adapter's questions once: readiness, which model may take work (as a ReadyModel the
request keeps), the request's limits, the span, and the one rejection count."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from functools import wraps
from pathlib import Path

import numpy as np
import pytest

from service.dataplane.admission import Stage
from service.dataplane.dataplane import DataPlane
from service.dataplane.inference import Upload
from service.dataplane.repository import ReadyModel
from service.errors import (
    DeadlineExceeded,
    Draining,
    EmptyInput,
    MalformedRequest,
    ModelNotFound,
    NotReady,
    Overloaded,
    TooManyFiles,
)
from service.lifecycle import Phase
from service.settings import Settings
from tests.support.images import BLUE, RED, encode, solid


def sync(case: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop (the suite has no asyncio plugin), fixtures passed through."""

    @wraps(case)
    def test(**fixtures: object) -> None:
        asyncio.run(asyncio.wait_for(case(**fixtures), 30))

    return test


@pytest.fixture
def repository(tiny_repository: Path, tmp_path: Path) -> Path:
    """The tiny repository plus a model whose card does not read (listed, never ready)."""
    root = tmp_path / "models"
    shutil.copytree(tiny_repository, root)
    (root / "broken").mkdir()
    (root / "broken" / "model.json").write_text("{}")
    return root


def sample(data_plane: DataPlane, name: str, **labels: str) -> float:
    value = data_plane.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def loaded(root: Path, **settings: object) -> DataPlane:
    data_plane = DataPlane.from_settings(Settings(model_dir=root, intra_op_threads=1, **settings))  # type: ignore[arg-type]
    data_plane.repository.discover()
    assert not data_plane.ready(), "ready before anything loaded"
    await data_plane.load()
    return data_plane


@sync
async def test_readiness_and_which_model_may_take_work(repository: Path) -> None:
    data_plane = await loaded(repository)
    try:
        assert data_plane.lifecycle.phase is Phase.SERVING
        assert data_plane.ready()  # one failed model does not stop the others (require_all_models is off)
        model = data_plane.model_for_work("pretrained")
        assert isinstance(model, ReadyModel)
        assert (model.name, model.version, model.card.labels) == ("pretrained", "1.0.0", ["cat", "dog", "other"])
        assert len(model.sha256) == 64 and model.precision == "fp32" and model.provider == "CPUExecutionProvider"
        assert data_plane.model_for_work("pretrained", "1.0.0") is model  # the same reference every time
        assert data_plane.takes_work("pretrained") and data_plane.model_ready("pretrained")
        with pytest.raises(ModelNotFound):
            data_plane.model_for_work("nope")
        with pytest.raises(ModelNotFound, match="no version '9'"):
            data_plane.model_for_work("pretrained", "9")
        with pytest.raises(NotReady, match=r"model\.json is invalid"):
            data_plane.model_for_work("broken")
        assert not data_plane.takes_work("broken") and not data_plane.model_ready("broken")
        with pytest.raises(ModelNotFound):
            data_plane.model_ready("nope")
        data_plane.lifecycle.begin_drain()
        assert not data_plane.ready() and not data_plane.model_ready("pretrained")
        with pytest.raises(Draining):
            data_plane.model_for_work("pretrained")
        assert not data_plane.takes_work("pretrained")
    finally:
        await data_plane.close()


@sync
async def test_request_limits_are_checked_before_any_work(repository: Path) -> None:
    data_plane = await loaded(repository, max_files_per_request=2)
    model = data_plane.model_for_work("pretrained")
    red = encode(solid(RED), "PNG")
    try:
        with pytest.raises(EmptyInput):
            await data_plane.classify(model, [])
        with pytest.raises(TooManyFiles, match="3 images in one request; the limit is 2"):
            await data_plane.classify(model, [Upload(red)] * 3)
        with pytest.raises(EmptyInput, match=r"b\.png"):
            await data_plane.classify(model, [Upload(red, "a.png"), Upload(b"", "b.png")])
        good = np.zeros((1, 3, 32, 32), dtype=np.float32)
        for bad, error in (
            (np.zeros((1, 3, 8, 8), dtype=np.float32), MalformedRequest),
            (good.astype(np.float64), MalformedRequest),
            (np.full((1, 3, 32, 32), np.nan, dtype=np.float32), MalformedRequest),
            (np.zeros((0, 3, 32, 32), dtype=np.float32), EmptyInput),
            (np.zeros((3, 3, 32, 32), dtype=np.float32), TooManyFiles),
        ):
            with pytest.raises(error):
                await data_plane.classify_tensors(model, bad)
        assert sample(data_plane, "catdog_inference_duration_seconds_count", model="pretrained") == 0
        [red_answer, blue_answer] = await data_plane.classify(model, [Upload(red), Upload(encode(solid(BLUE), "PNG"))])
        assert (red_answer.answer.label, blue_answer.answer.label) == ("cat", "dog")
        [answer] = await data_plane.classify_tensors(model, good)
        assert set(answer.probabilities) == {"cat", "dog", "other"}
        counted = [
            sample(data_plane, "catdog_predictions_total", model="pretrained", label=x) for x in answer.probabilities
        ]
        assert sum(counted) == 3  # each answer counted once, images and tensors alike
    finally:
        await data_plane.close()


@sync
async def test_span_admits_counts_and_bounds_a_request(repository: Path) -> None:
    data_plane = await loaded(repository, admission_min_limit=1, admission_max_limit=1)
    model = data_plane.model_for_work("pretrained")
    try:
        async with data_plane.span(model, "catdog", timeout_s=5) as permit:
            assert sample(data_plane, "catdog_requests_in_flight", model="pretrained") == 1
            assert data_plane.admission.in_flight("pretrained") == 1
            with pytest.raises(Overloaded) as refused:  # its one slot is taken
                data_plane.admit("pretrained")
            data_plane.rejected("pretrained", refused.value)
            with permit.track(Stage.READING):
                assert data_plane.admission.depth("pretrained", Stage.READING) == 1
        assert data_plane.admission.in_flight("pretrained") == 0
        assert sample(data_plane, "catdog_requests_in_flight", model="pretrained") == 0
        assert sample(data_plane, "catdog_request_duration_seconds_count", model="pretrained", protocol="catdog") == 1
        assert sample(data_plane, "catdog_rejected_requests_total", model="pretrained", reason="overloaded") == 1
        with pytest.raises(DeadlineExceeded, match=r"no answer within 0\.05 s"):
            async with data_plane.span(model, "oip_rest", timeout_s=0.05):
                await asyncio.sleep(1)
        assert data_plane.admission.in_flight("pretrained") == 0
        data_plane.rejected(None, DeadlineExceeded("x"))  # a refusal with no model counts under "-"
        assert sample(data_plane, "catdog_rejected_requests_total", model="-", reason="timeout") == 1
    finally:
        await data_plane.close()
