"""A deliberately naive baseline written the way the seed served models: one request, one synchronous full
decode and one ONNX Runtime run inside the async handler (blocking the event loop), default session options,
no batching, no draft decode, no thread hand-off. Same models, same cards, same images as catdog, so the
benchmark's catdog/naive ratio measures the serving design and nothing else.

Run: CATDOG_MODEL_DIR=models uvicorn loadtest.naive_server:app --port 8100
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, File, HTTPException, UploadFile
from PIL import Image

MODEL_DIR = Path(os.environ.get("CATDOG_MODEL_DIR", "models"))
app = FastAPI(title="naive baseline")
_models: dict[str, tuple[ort.InferenceSession, dict[str, Any]]] = {}


def _load(name: str) -> tuple[ort.InferenceSession, dict[str, Any]]:
    if name not in _models:
        card = json.loads((MODEL_DIR / name / "model.json").read_text())
        _models[name] = (ort.InferenceSession(str(MODEL_DIR / name / card["onnx"]["file"])), card)
    return _models[name]


for _folder in sorted(MODEL_DIR.glob("*/model.json")):
    _load(_folder.parent.name)


def _preprocess(data: bytes, card: dict[str, Any]) -> np.ndarray:
    """Full-resolution decode, resize the whole image, crop, normalise: the textbook path."""
    image = Image.open(io.BytesIO(data)).convert("RGB")
    spec, size = card["preprocessing"], card["input"]
    short = spec["resize_short_side"]
    w, h = image.size
    new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    image = image.resize(new, Image.Resampling.BILINEAR)
    left, top = round((new[0] - size["width"]) / 2), round((new[1] - size["height"]) / 2)
    image = image.crop((left, top, left + size["width"], top + size["height"]))
    pixels = (np.asarray(image, dtype=np.float32) - np.asarray(spec["mean"], np.float32)) / np.asarray(
        spec["std"], np.float32
    )
    return pixels.transpose(2, 0, 1)[None].astype(np.float32)


def _predict(name: str, data: bytes) -> dict[str, Any]:
    if name not in _models:
        raise HTTPException(404, f"no model {name}")
    session, card = _models[name]
    scores = session.run(None, {card["input"]["name"]: _preprocess(data, card)})[0][0]
    if card["output"]["kind"] == "logits":
        scores = np.exp(scores - scores.max())
        scores = scores / scores.sum()
    labels = card["labels"]
    best = int(np.argmax(scores))
    return {"model": name, "label": labels[best], "confidence": float(scores[best])}


@app.post("/predict/{name}")
async def predict(name: str, file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008
    return _predict(name, await file.read())


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}
