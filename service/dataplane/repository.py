"""The model repository: every `<model_dir>/<name>/` with a model.json. Loading never raises for a broken
model: it is marked failed with a clear reason (logged, shown in /readyz and /v1/models) and the others serve."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import structlog
from pydantic import ValidationError

from service.dataplane.batching import MicroBatcher
from service.dataplane.card import ModelCard, Precision
from service.dataplane.imaging import ImageLimits, warm_up_decoders
from service.dataplane.runtime import OnnxModel, resolve_providers
from service.errors import ModelNotFound, NotReady, StartupError
from service.observability import ServiceMetrics
from service.settings import Settings

log = structlog.get_logger(__name__)

Status = Literal["loading", "ready", "failed"]


@dataclass(frozen=True, slots=True)
class ReadyModel:
    """A model that can take work, every part of it present: what a request holds for its whole life. The
    repository hands out this reference, never its slot, so a later version loaded beside it (or swapped in)
    cannot change a request already under way."""

    name: str
    card: ModelCard
    runtime: OnnxModel = field(repr=False)
    batcher: MicroBatcher = field(repr=False)
    precision: Precision
    sha256: str

    @property
    def version(self) -> str:
        return self.card.version

    @property
    def provider(self) -> str:
        return self.runtime.provider


@dataclass
class ServedModel:
    """A repository slot, whatever its state: what /readyz and /v1/models describe. Work goes to `serving`."""

    name: str
    folder: Path
    status: Status = "loading"
    error: str | None = None
    card: ModelCard | None = None
    sha256: str | None = None
    precision: Precision | None = None
    runtime: OnnxModel | None = field(default=None, repr=False)
    serving: ReadyModel | None = field(default=None, repr=False)

    @property
    def provider(self) -> str | None:
        return self.runtime.provider if self.runtime else None


class ModelRepository:
    def __init__(self, settings: Settings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.models: dict[str, ServedModel] = {}

    def discover(self, only: str | None = None) -> None:
        """Find the model folders (cheap, synchronous): names are known before anything loads. `only` keeps one
        model (the CLI's `predict --model`)."""
        root = self.settings.model_dir
        if not root.is_dir():
            log.error("model_dir_missing", model_dir=str(root))
            return
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if only is not None and folder.name != only:
                continue
            if (folder / "model.json").exists() or (folder / "model.onnx").exists():
                self.models[folder.name] = ServedModel(folder.name, folder)
                self.metrics.model_ready.labels(folder.name).set(0)

    async def load_all(self) -> None:
        """Load and warm every model, in parallel threads; start each ready model's batcher."""
        providers = resolve_providers(self.settings.providers)
        await asyncio.gather(*(asyncio.to_thread(self._load, m, providers) for m in self.models.values()))
        for model in self.models.values():
            # Marked ready only here, with its batcher running, so /readyz never runs ahead of /predict.
            runtime, card, precision, sha256 = model.runtime, model.card, model.precision, model.sha256
            if model.status != "loading" or runtime is None or card is None or precision is None or sha256 is None:
                continue
            batcher = MicroBatcher(
                model.name,
                runtime.run,
                max_batch_size=self.settings.batch_max_size,
                max_wait_s=self.settings.batch_max_wait_ms / 1000,
                queue_max=self.settings.queue_max,
                observer=self.metrics.for_model(model.name),
            )
            batcher.start()
            model.serving = ReadyModel(model.name, card, runtime, batcher, precision, sha256)
            model.status = "ready"
            log.info(
                "model_ready",
                model=model.name,
                version=card.version,
                provider=runtime.provider,
                sha256=sha256,
                precision=precision,
            )
            self.metrics.model_ready.labels(model.name).set(1)
            self.metrics.model_info.labels(model.name, card.version, sha256, runtime.provider, precision).set(1)
        log.info("models_loaded", ready=self.ready_names(), failed=self.failures())

    async def stop(self) -> None:
        for model in self.models.values():
            if model.serving is not None:
                await model.serving.batcher.stop()

    def _load(self, model: ServedModel, providers: list[str]) -> None:
        try:
            model.card = ModelCard.load(model.folder / "model.json")
            wanted = self.settings.precision
            model.precision, file, expected = model.card.resolve(wanted)
            if wanted != "auto" and model.precision != wanted:
                log.warning("model_precision_unavailable", model=model.name, wanted=wanted, serving=model.precision)
            onnx_path = model.folder / file
            data = onnx_path.read_bytes()
            model.sha256 = hashlib.sha256(data).hexdigest()
            if expected and expected.lower() != model.sha256:
                raise ValueError(f"sha256 of {onnx_path.name} is {model.sha256}, the card says {expected}")
            model.runtime = OnnxModel(
                onnx_path,
                input_name=model.card.input.name,
                output_name=model.card.output.name,
                providers=providers,
                intra_op_threads=self.settings.intra_op_threads,
                inter_op_threads=self.settings.inter_op_threads,
            )
            self._warm_up(model.card, model.runtime)
        except StartupError:
            raise
        except FileNotFoundError as exc:
            self._fail(model, f"missing file: {Path(exc.filename or '?').name}")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            self._fail(model, f"model.json is invalid: {where}: {first['msg']} ({exc.error_count()} error(s))")
        except Exception as exc:
            self._fail(model, f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")

    def _warm_up(self, card: ModelCard, runtime: OnnxModel) -> None:
        """Run blank batches through the graph: first-run allocations happen now, and a graph whose output
        does not fit the card fails here rather than on a client's request. Then the decoders, so the first
        request does not load a codec either."""
        shape = (3, card.input.height, card.input.width)
        sizes = sorted({1, self.settings.batch_max_size})
        for _ in range(self.settings.warmup_runs):
            for size in sizes:
                out = runtime.run(np.zeros((size, *shape), dtype=np.float32))
                if out.shape != (size, len(card.labels)):
                    raise ValueError(f"output shape {out.shape} does not match {len(card.labels)} labels in model.json")
        limits = ImageLimits(self.settings.max_upload_bytes, self.settings.max_image_pixels, self.settings.max_frames)
        warm_up_decoders(card.preprocessing, card.input, limits)

    def _fail(self, model: ServedModel, reason: str) -> None:
        model.status, model.error, model.runtime = "failed", reason, None
        log.error("model_failed", model=model.name, reason=reason)

    def known(self, name: str) -> ServedModel:
        """The slot named `name`, in any state; ModelNotFound (404) when the repository has none."""
        model = self.models.get(name)
        if model is None:
            raise ModelNotFound(f"no model named {name!r}; see GET /v1/models")
        return model

    def get(self, name: str) -> ReadyModel:
        """The model that serves `name` now: ModelNotFound (404), or NotReady (503) while loading or failed."""
        model = self.known(name)
        if model.serving is None:
            detail = model.error or "still loading"
            raise NotReady(f"model {name!r} is not ready: {detail}")
        return model.serving

    def ready_names(self) -> list[str]:
        return [m.name for m in self.models.values() if m.status == "ready"]

    def failures(self) -> dict[str, str]:
        return {m.name: m.error or "" for m in self.models.values() if m.status == "failed"}

    @property
    def loading(self) -> bool:
        return any(m.status == "loading" for m in self.models.values())

    @property
    def ready(self) -> bool:
        """Every model has finished loading, and all (require_all_models) or at least one of them is ready."""
        if self.loading or not self.models:
            return False
        if self.settings.require_all_models:
            return not self.failures()
        return bool(self.ready_names())
