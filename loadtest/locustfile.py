"""Locust users for catdog: post real photos (loadtest/images, or CATDOG_LOADTEST_IMAGES) to the seed routes
and the generic route, with weights, and check every answer's fields. Tags select routes: `seed`, `generic`,
`pretrained`, `scratch`, `batch` (several files in one request).

    locust -f loadtest/locustfile.py --host http://127.0.0.1:8000 --headless -u 8 -r 4 -t 1m \
        --csv artifacts/locust/run --html artifacts/locust/run.html
    python -m loadtest run --profile steady --host http://127.0.0.1:8000   # profiles + report

With access control on, give the key in CATDOG_LOADTEST_API_KEY (sent as `Authorization: Bearer <key>`).

FastHttpUser (geventhttpclient) costs several times less CPU per request than HttpUser, so one Locust
process can load a small deployment without becoming the bottleneck.
"""

from __future__ import annotations

import csv
import os
import random
import uuid
from pathlib import Path
from typing import Any

from locust import FastHttpUser, between, tag, task

IMAGES_DIR = Path(os.environ.get("CATDOG_LOADTEST_IMAGES", Path(__file__).parent / "images"))
MODELS = [m for m in os.environ.get("CATDOG_LOADTEST_MODELS", "pretrained,scratch").split(",") if m]
API_KEY = os.environ.get("CATDOG_LOADTEST_API_KEY", "")  # a key with the infer scope, when the service needs one
FIELDS = ("model", "model_version", "label", "confidence", "probabilities", "request_id")
CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp"}


def load_images(folder: Path = IMAGES_DIR) -> list[tuple[str, bytes, str]]:
    """(file name, bytes, content type) of every image listed in the folder's MANIFEST.csv (or every image)."""
    manifest = folder / "MANIFEST.csv"
    if manifest.exists():
        with manifest.open() as f:
            names = [row["file"] for row in csv.DictReader(f)]
    else:
        names = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in CONTENT_TYPES)
    if not names:
        raise RuntimeError(f"no images in {folder}")
    return [(n, (folder / n).read_bytes(), CONTENT_TYPES.get(Path(n).suffix.lower(), "image/jpeg")) for n in names]


IMAGES = load_images()


def check_prediction(body: Any, model: str) -> str | None:
    """Why an answer is wrong, or None: every contract field present, the model echoed, probabilities sum to 1."""
    if not isinstance(body, dict):
        return "body is not a JSON object"
    missing = [f for f in FIELDS if f not in body]
    if missing:
        return f"missing fields {missing}"
    if body["model"] != model:
        return f"answered by {body['model']!r}, not {model!r}"
    probabilities = body["probabilities"]
    if body["label"] not in probabilities or not 0.0 <= body["confidence"] <= 1.0:
        return f"label {body['label']!r} / confidence {body['confidence']!r} inconsistent"
    if abs(sum(probabilities.values()) - 1.0) > 1e-3:
        return "probabilities do not sum to 1"
    return None


class CatdogUser(FastHttpUser):
    """A client of the API: mostly the small model through the seed route, some generic-route traffic."""

    wait_time = between(0.0, float(os.environ.get("CATDOG_LOADTEST_MAX_WAIT_S", "0.5")))

    def _post(self, path: str, model: str, name: str, files: int = 1) -> None:
        picks = random.sample(IMAGES, k=min(files, len(IMAGES)))
        body, content_type = multipart(picks)
        headers = {"Content-Type": content_type}
        if API_KEY:
            headers["Authorization"] = f"Bearer {API_KEY}"
        with self.client.post(
            path,
            data=body,  # type: ignore[arg-type]
            headers=headers,
            name=name,
            catch_response=True,
        ) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            body = response.json()
            if files > 1:
                problems = [check_prediction({**p, **_envelope(body)}, model) for p in body.get("predictions", [])]
                problem = next((p for p in problems if p), None) if len(problems) == len(picks) else "wrong count"
            else:
                problem = check_prediction(body, model)
            if problem:
                response.failure(problem)

    @tag("seed", "pretrained")
    @task(6)
    def predict_pretrained(self) -> None:
        if "pretrained" in MODELS:
            self._post("/predict/pretrained", "pretrained", "/predict/pretrained")

    @tag("seed", "scratch")
    @task(2)
    def predict_scratch(self) -> None:
        if "scratch" in MODELS:
            self._post("/predict/scratch", "scratch", "/predict/scratch")

    @tag("generic")
    @task(2)
    def predict_generic(self) -> None:
        model = random.choice(MODELS)
        self._post(f"/v1/models/{model}/predict", model, "/v1/models/[name]/predict")

    @tag("generic", "batch")
    @task(1)
    def predict_several(self) -> None:
        model = random.choice(MODELS)
        self._post(f"/v1/models/{model}/predict", model, "/v1/models/[name]/predict (4 files)", files=4)


def multipart(images: list[tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A multipart/form-data body with each image as field `file` (FastHttpUser has no `files=`)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: {ctype}\r\n\r\n".encode()
        + data
        + b"\r\n"
        for name, data, ctype in images
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def _envelope(body: dict[str, Any]) -> dict[str, Any]:
    return {k: body[k] for k in ("model", "model_version", "request_id") if k in body}
