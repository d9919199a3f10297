"""Helpers for the Open Inference Protocol tests: a repository with a broken model, the reference answer from
/predict, and the same model run by ONNX Runtime directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from tests.support.images import RED, encode, solid
from tests.support.onnx_models import write_model_dir, write_test_repository
from tests.support.server import ServiceProcess

LABELS = {"pretrained": ["cat", "dog", "other"], "scratch": ["cat", "dog"]}
INPUT_SIZE = {"pretrained": (32, 32), "scratch": (48, 40)}  # (height, width) of the tiny test models
BROKEN = "broken"


def write_oip_repository(root: Path) -> Path:
    """The tiny `pretrained` and `scratch` colour models, and `broken`: listed, never ready."""
    write_test_repository(root)
    folder = write_model_dir(root, BROKEN)
    (folder / "model.onnx").write_bytes(b"this is not an ONNX model")
    return root


def predict_probabilities(svc: ServiceProcess, model: str, data: bytes) -> list[float]:
    """What catdog's own route answers for this image, in the card's label order."""
    response = svc.client.post(f"/v1/models/{model}/predict", files={"file": ("x", data)})
    assert response.status_code == 200, response.text
    probabilities = response.json()["probabilities"]
    return [probabilities[label] for label in LABELS[model]]


def onnx_probabilities(repository: Path, model: str, batch: np.ndarray) -> np.ndarray:
    """The model file run by ONNX Runtime itself (softmax applied for the logits model, as the card says)."""
    session = ort.InferenceSession(str(repository / model / "model.onnx"), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": batch})[0]
    if model == "scratch":
        out = np.exp(out - out.max(axis=1, keepdims=True))
        out = out / out.sum(axis=1, keepdims=True)
    return np.asarray(out)


def red_jpeg() -> bytes:
    return encode(solid(RED, (64, 48)), "JPEG")


def random_batch(model: str, n: int, seed: int = 0) -> np.ndarray:
    height, width = INPUT_SIZE[model]
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, height, width)).astype(np.float32)
