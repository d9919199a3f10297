"""The protocol-free data plane: images in, answers out. Routes and `catdog predict` both go through
`Classifier.classify`, so the CLI exercises exactly the service's path."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from service.dataplane.imaging import DecodedImage, ImageLimits, load_tensor
from service.dataplane.postprocess import Answer, decide
from service.dataplane.repository import ServedModel
from service.dataplane.runtime import usable_cpus
from service.errors import InferenceFailed
from service.observability import ServiceMetrics
from service.settings import Settings


@dataclass(frozen=True, slots=True)
class Upload:
    """One encoded image as a client sent it (any protocol), with the name it came under, if any."""

    data: bytes
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class Prediction:
    answer: Answer
    image: DecodedImage
    filename: str | None


class Classifier:
    """Decodes on a bounded pool of its own (each decode may hold a `max_pixels` image, so the pool size
    bounds decode memory under a flood), then hands tensors to the model's batcher."""

    def __init__(self, limits: ImageLimits, metrics: ServiceMetrics, decode_workers: int) -> None:
        self.limits = limits
        self.metrics = metrics
        self._pool = ThreadPoolExecutor(max_workers=decode_workers, thread_name_prefix="decode")

    async def classify(self, model: ServedModel, uploads: list[Upload]) -> list[Prediction]:
        """Decode every image first (one bad file fails the request before any inference), then run them
        through the model's batcher concurrently. Raises the service's errors for bad input or overload."""
        assert model.card is not None
        assert model.batcher is not None
        card, batcher = model.card, model.batcher
        loop = asyncio.get_running_loop()
        decoded = await asyncio.gather(*(loop.run_in_executor(self._pool, self._prepare, model, u) for u in uploads))
        rows = await asyncio.gather(*(batcher.submit(tensor) for tensor, _ in decoded))
        predictions = []
        for (_, image), row, upload in zip(decoded, rows, uploads, strict=True):
            try:
                answer = decide(row, card.labels, is_logits=card.output.kind == "logits", decision=card.decision)
            except ValueError as exc:
                raise InferenceFailed(f"model {model.name!r} gave an unusable output: {exc}") from None
            self.metrics.predictions.labels(model.name, answer.label).inc()
            self.metrics.confidence.labels(model.name).observe(answer.confidence)
            predictions.append(Prediction(answer, image, upload.filename))
        return predictions

    @classmethod
    def from_settings(cls, settings: Settings, metrics: ServiceMetrics) -> Classifier:
        limits = ImageLimits(settings.max_upload_bytes, settings.max_image_pixels, settings.max_frames)
        return cls(limits, metrics, decode_workers=settings.decode_workers or usable_cpus())

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _prepare(self, model: ServedModel, upload: Upload) -> tuple[np.ndarray, DecodedImage]:
        assert model.card is not None
        started = time.perf_counter()
        tensor, image = load_tensor(upload.data, model.card.preprocessing, model.card.input, self.limits)
        self.metrics.preprocess_seconds.labels(model.name).observe(time.perf_counter() - started)
        self.metrics.image_bytes.labels(model.name).observe(image.num_bytes)
        self.metrics.image_pixels.labels(model.name).observe(image.width * image.height)
        return tensor, image
