"""The two pipelines (`CATDOG_PIPELINE`): `direct` (a request's decode and inference in one job on the model's
thread, the default on one core) and `split` (the decode pool, then the model's thread) give the same answers,
errors and metrics on the shipped models, whichever the machine would pick."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.server import REPO_ROOT, ServiceProcess

pytestmark = pytest.mark.slow

PHOTOS = ("cat-kitten.webp", "dog-dog.jpg", "other-alpaca.webp", "cat-cifar10-00-3.png")


def _count(metrics: str, name: str, model: str) -> float:
    found = re.search(rf'^{name}_count{{model="{model}"}} (\S+)$', metrics, re.M)
    assert found, name
    return float(found.group(1))


def _serve(photos: dict[str, Path], pipeline: str) -> dict[str, tuple[str, dict[str, float]]]:
    answers = {}
    env = {"CATDOG_MODEL_DIR": str(REPO_ROOT / "models"), "CATDOG_PIPELINE": pipeline}
    with ServiceProcess(env) as svc:
        [starting] = svc.wait_for_log(lambda r: r.get("event") == "starting")
        assert starting["pipeline"] == pipeline
        for name in PHOTOS:
            response = svc.client.post("/predict/pretrained", files={"file": (name, photos[name].read_bytes())})
            assert response.status_code == 200, response.text
            answers[name] = (response.json()["label"], response.json()["probabilities"])
        # A bad image is the client's error, raised from wherever it was decoded, and costs the model nothing.
        bad = svc.client.post("/predict/pretrained", files={"file": ("x.jpg", b"\xff\xd8\xff\xe0 not a jpeg")})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_image", bad.text
        # Several images in one request: every one decoded before any inference, one row each, in order.
        two = [("file", (n, photos[n].read_bytes())) for n in PHOTOS[:2]]
        both = svc.client.post("/predict/pretrained", files=two)
        assert [p["label"] for p in both.json()["predictions"]] == [answers[n][0] for n in PHOTOS[:2]]
        metrics = svc.client.get("/metrics").text
        images = len(PHOTOS) + 2
        assert _count(metrics, "catdog_preprocess_duration_seconds", "pretrained") == images
        assert _count(metrics, "catdog_inference_duration_seconds", "pretrained") == images  # batches of one
        assert _count(metrics, "catdog_queue_wait_seconds", "pretrained") == images
        for stage in ("reading", "decoding", "queued", "inference"):
            assert f'catdog_stage_depth{{model="pretrained",stage="{stage}"}} 0.0' in metrics, stage
    return answers


def test_direct_and_split_pipelines_give_the_same_answers_errors_and_metrics(photos: dict[str, Path]) -> None:
    direct, split = _serve(photos, "direct"), _serve(photos, "split")
    assert {n: label for n, (label, _) in direct.items()} == {
        "cat-kitten.webp": "cat",
        "dog-dog.jpg": "dog",
        "other-alpaca.webp": "other",
        "cat-cifar10-00-3.png": direct["cat-cifar10-00-3.png"][0],  # a 32 px thumbnail: whatever it is, alike
    }
    for name in PHOTOS:
        assert direct[name][0] == split[name][0]
        assert direct[name][1] == pytest.approx(split[name][1], abs=1e-6)
