"""The protocol-free data plane: images in, answers out. Routes and `catdog predict` both call `classify`."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np

from service.errors import InferenceFailed
from service.imaging import DecodedImage, ImageLimits, load_tensor
from service.observability import ServiceMetrics
from service.postprocess import Answer, decide
from service.repository import ServedModel
from service.uploads import Upload


@dataclass(frozen=True, slots=True)
class Prediction:
    answer: Answer
    image: DecodedImage
    filename: str | None


async def classify(
    model: ServedModel, uploads: list[Upload], limits: ImageLimits, metrics: ServiceMetrics
) -> list[Prediction]:
    """Decode every image first (so one bad file fails the request before any inference), then run them
    through the model's batcher concurrently. Raises the service's errors for bad input or overload."""
    assert model.card is not None and model.batcher is not None
    card, batcher = model.card, model.batcher
    decoded = await asyncio.gather(*(asyncio.to_thread(_prepare, model, u, limits, metrics) for u in uploads))
    rows = await asyncio.gather(*(batcher.submit(tensor) for tensor, _ in decoded))
    predictions = []
    for (_, image), row, upload in zip(decoded, rows, uploads, strict=True):
        try:
            answer = decide(row, card.labels, is_logits=card.output.kind == "logits", decision=card.decision)
        except ValueError as exc:
            raise InferenceFailed(f"model {model.name!r} gave an unusable output: {exc}") from None
        metrics.predictions.labels(model.name, answer.label).inc()
        metrics.confidence.labels(model.name).observe(answer.confidence)
        predictions.append(Prediction(answer, image, upload.filename))
    return predictions


def _prepare(
    model: ServedModel, upload: Upload, limits: ImageLimits, metrics: ServiceMetrics
) -> tuple[np.ndarray, DecodedImage]:
    assert model.card is not None
    started = time.perf_counter()
    tensor, image = load_tensor(upload.data, model.card.preprocessing, model.card.input, limits)
    metrics.preprocess_seconds.labels(model.name).observe(time.perf_counter() - started)
    metrics.image_bytes.labels(model.name).observe(image.num_bytes)
    metrics.image_pixels.labels(model.name).observe(image.width * image.height)
    return tensor, image
