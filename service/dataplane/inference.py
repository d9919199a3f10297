"""Images or tensors in, answers out, for a model that is ready: the decode pool, the batcher and the decision.
Reached through the DataPlane (service/dataplane/dataplane.py), which checks the request's limits first, so the
routes, the gRPC servicer and `catdog predict` all exercise exactly this path."""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from service.dataplane.admission import Permit, Stage
from service.dataplane.imaging import DecodedImage, ImageLimits, load_tensor
from service.dataplane.postprocess import Answer, decide
from service.dataplane.repository import ReadyModel
from service.dataplane.runtime import usable_cpus
from service.dataplane.threads import lower_thread_priority
from service.errors import CatdogError, InferenceFailed
from service.observability import ServiceMetrics
from service.payloadlog import record as payload_log
from service.settings import Settings
from service.tracing import context as tracing

if TYPE_CHECKING:
    from service.tracing.spans import RequestTrace


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

    def __init__(
        self,
        limits: ImageLimits,
        metrics: ServiceMetrics,
        decode_workers: int,
        *,
        direct: bool = False,
    ) -> None:
        self.limits = limits
        self.metrics = metrics
        self.direct = direct
        self._pool = ThreadPoolExecutor(
            max_workers=decode_workers, thread_name_prefix="decode", initializer=lower_thread_priority
        )

    async def classify(
        self, model: ReadyModel, uploads: list[Upload], permit: Permit | None = None
    ) -> list[Prediction]:
        """Decode every image first (one bad file fails the request before any inference), then run them
        through the model's batcher concurrently. Raises the service's errors for bad input or overload.
        With a permit, each stage is counted and work past its deadline is dropped before it starts."""
        batcher = model.batcher
        trace, record = tracing.current(), payload_log.current()  # None unless traced / payload-logged
        if record is not None:
            record.uploads, record.model_version = uploads, model.card.version
        if self.direct and len(uploads) == 1 and batcher.max_batch_size == 1:
            rows, images = await self._decode_and_run(model, uploads[0], permit, trace)
        else:
            loop = asyncio.get_running_loop()
            decoding = time.perf_counter()
            with permit.track(Stage.DECODING) if permit is not None else contextlib.nullcontext():
                decoded = await asyncio.gather(
                    *(loop.run_in_executor(self._pool, self._prepare, model, u, permit, trace) for u in uploads)
                )
            if permit is not None:
                permit.timings.compute_input_ns += round((time.perf_counter() - decoding) * 1e9)
            rows = await asyncio.gather(*(batcher.submit(tensor, permit) for tensor, _ in decoded))
            images = [image for _, image in decoded]
        deciding = time.perf_counter()
        predictions = [
            Prediction(self._answer(model, row), image, upload.filename)
            for image, row, upload in zip(images, rows, uploads, strict=True)
        ]
        if permit is not None:
            permit.timings.compute_output_ns += round((time.perf_counter() - deciding) * 1e9)
        if record is not None:
            record.decoded(images)
            record.answers = [p.answer for p in predictions]
        return predictions

    async def classify_tensors(
        self, model: ReadyModel, batch: np.ndarray, permit: Permit | None = None
    ) -> list[Answer]:
        """Clients that preprocess themselves (the Open Inference Protocol's FP32 input): a float32 batch in the
        card's input size (checked by the DataPlane) goes through the same batcher, decision and metrics as
        decoded images, one row each."""
        record = payload_log.current()
        if record is not None:
            record.tensor, record.model_version = batch, model.card.version
        rows = await asyncio.gather(*(model.batcher.submit(tensor, permit) for tensor in batch))
        deciding = time.perf_counter()
        answers = [self._answer(model, row) for row in rows]
        if permit is not None:
            permit.timings.compute_output_ns += round((time.perf_counter() - deciding) * 1e9)
        if record is not None:
            record.answers = answers
        return answers

    def _answer(self, model: ReadyModel, row: np.ndarray) -> Answer:
        """One output row -> the card's decision, counted in the prediction metrics; an unusable row is the
        model's failure (500), never the client's."""
        card = model.card
        try:
            answer = decide(row, card.labels, is_logits=card.output.kind == "logits", decision=card.decision)
        except ValueError as exc:
            raise InferenceFailed(f"model {model.name!r} gave an unusable output: {exc}") from None
        self.metrics.predictions.labels(model.name, answer.label).inc()
        self.metrics.confidence.labels(model.name).observe(answer.confidence)
        return answer

    @classmethod
    def from_settings(cls, settings: Settings, metrics: ServiceMetrics) -> Classifier:
        limits = ImageLimits(settings.max_upload_bytes, settings.max_image_pixels, settings.max_frames)
        cpus = usable_cpus()
        # Direct jobs run one image at a time: with batching on, the split pipeline runs whatever was asked.
        direct = settings.batch_max_size == 1 and (
            settings.pipeline == "direct" or (settings.pipeline == "auto" and cpus == 1)
        )
        return cls(limits, metrics, decode_workers=settings.decode_workers or cpus, direct=direct)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _decode_and_run(
        self, model: ReadyModel, upload: Upload, permit: Permit | None, trace: RequestTrace | None = None
    ) -> tuple[list[np.ndarray], list[DecodedImage]]:
        """The direct pipeline: decode and inference of one image in one job on the model's inference thread
        (MicroBatcher.submit_prepared). On one core the decode pool cannot overlap anything, and each hand-off
        between threads costs the event loop a wake-up and the GIL a switch: about 0.3 ms per small image
        (docs/benchmarks.md). The job counts in the queued and inference stages; its decode in preprocess_seconds."""
        images: list[DecodedImage] = []

        def prepare() -> np.ndarray:
            tensor, image = self._prepare(model, upload, permit, trace)
            images.append(image)
            return tensor

        row = await model.batcher.submit_prepared(prepare, permit)
        return [row], images

    def _prepare(
        self, model: ReadyModel, upload: Upload, permit: Permit | None = None, trace: RequestTrace | None = None
    ) -> tuple[np.ndarray, DecodedImage]:
        """On a decode thread (or the inference thread, direct): one image to its tensor, measured and, when the
        request is traced, recorded as its `catdog.decode` span (the image's size, format and pixels)."""
        if permit is not None:
            permit.check(Stage.DECODING)  # waited in the pool past its deadline: not decoded for nobody
        started = time.perf_counter()
        try:
            tensor, image = load_tensor(upload.data, model.card.preprocessing, model.card.input, self.limits)
        except CatdogError as exc:
            if trace is not None:
                trace.record("catdog.decode", started, time.perf_counter(), _image_attributes(upload), error=exc)
            raise
        ended = time.perf_counter()
        if trace is not None:
            trace.record("catdog.decode", started, ended, _image_attributes(upload, image))
        exemplar = None if trace is None else trace.exemplar
        self.metrics.preprocess_seconds.labels(model.name).observe(ended - started, exemplar)
        self.metrics.image_bytes.labels(model.name).observe(image.num_bytes)
        self.metrics.image_pixels.labels(model.name).observe(image.width * image.height)
        return tensor, image


def _image_attributes(upload: Upload, image: DecodedImage | None = None) -> dict[str, str | int]:
    found: dict[str, str | int] = {"catdog.image.bytes": len(upload.data)}
    if image is not None:
        found.update(
            {
                "catdog.image.format": image.format,
                "catdog.image.width": image.width,
                "catdog.image.height": image.height,
                "catdog.image.pixels": image.width * image.height,
            }
        )
    return found
