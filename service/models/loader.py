"""Load one version from its folder: verify (card, size cap, sha256, external data), open the ONNX Runtime
session, warm it up. Runs in a worker thread, never on the event loop; any failure raises LoadFailed with the
phase and a one-line reason, and leaves nothing behind (the session is dropped with the exception)."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import structlog
from pydantic import ValidationError

from service.dataplane.card import ModelCard, Precision, Resolved
from service.dataplane.cpu import this_cpu
from service.dataplane.imaging import ImageLimits, warm_up_decoders
from service.dataplane.runtime import CPU, OnnxModel
from service.errors import StartupError
from service.models.layout import VersionFolder
from service.models.safety import UnsafePath, check_external_data, inside, safe_relative
from service.settings import Settings

log = structlog.get_logger(__name__)

Phase = Literal["download", "verify", "session", "warmup"]
PHASES: tuple[Phase, ...] = ("download", "verify", "session", "warmup")


class LoadFailed(Exception):
    def __init__(self, phase: Phase, reason: str) -> None:
        super().__init__(reason)
        self.phase = phase
        self.reason = reason


@dataclass(slots=True)
class LoadedVersion:
    """Loaded and warmed up; its batcher is made by the registry, on the event loop."""

    card: ModelCard
    precision: Precision
    sha256: str
    runtime: OnnxModel = field(repr=False)
    seconds: dict[Phase, float] = field(default_factory=dict)


def describe(exc: BaseException) -> str:
    """One line a person can act on, for the index, the log and /readyz."""
    if isinstance(exc, FileNotFoundError):
        return f"missing file: {Path(exc.filename or '?').name}"
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"model.json is invalid: {where}: {first['msg']} ({exc.error_count()} error(s))"
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"


def load_version(name: str, version: VersionFolder, settings: Settings, providers: list[str]) -> LoadedVersion:
    seconds: dict[Phase, float] = {}
    phase: Phase = "verify"
    started = time.perf_counter()
    try:
        card, served, onnx_path, sha256 = _verify(name, version, settings, providers)
        seconds["verify"] = time.perf_counter() - started
        phase, started = "session", time.perf_counter()
        runtime = OnnxModel(
            onnx_path,
            input_name=card.input.name,
            output_name=card.output.name,
            providers=providers,
            intra_op_threads=settings.intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
            exact_int8=served.exact_int8,
        )
        seconds["session"] = time.perf_counter() - started
        phase, started = "warmup", time.perf_counter()
        warm_up(runtime, card, settings)
        seconds["warmup"] = time.perf_counter() - started
    except StartupError:
        raise  # the provider the operator asked for is missing: not one model's problem
    except Exception as exc:
        raise LoadFailed(phase, describe(exc)) from exc
    return LoadedVersion(card, served.precision, sha256, runtime, seconds)


def _verify(
    name: str, version: VersionFolder, settings: Settings, providers: list[str]
) -> tuple[ModelCard, Resolved, Path, str]:
    if version.size_bytes > settings.model_max_bytes:
        raise ValueError(f"{version.size_bytes} bytes is over CATDOG_MODEL_MAX_BYTES ({settings.model_max_bytes})")
    card = ModelCard.load(version.folder / "model.json")
    if version.nested and card.version != version.version:
        raise ValueError(f"model.json says version {card.version!r} but its folder is {version.version!r}")
    served = _resolve(name, card, settings.precision, providers)
    try:
        onnx_path = inside(version.folder, safe_relative(served.file))
    except UnsafePath:
        raise UnsafePath(f"model.json names an ONNX file outside its folder: {served.file!r}") from None
    digest = hashlib.sha256()
    with onnx_path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    sha256 = digest.hexdigest()
    if served.sha256 and served.sha256.lower() != sha256:
        raise ValueError(f"sha256 of {onnx_path.name} is {sha256}, the card says {served.sha256}")
    check_external_data(onnx_path, version.folder)
    return card, served, onnx_path, sha256


def _resolve(name: str, card: ModelCard, wanted: Literal["auto", "fp32", "int8"], providers: list[str]) -> Resolved:
    """The card's choice for CATDOG_PRECISION on this machine, logged where it is not what was asked."""
    arithmetic = this_cpu()  # under CUDA resolve() ignores it: nothing is emulated there
    served = card.resolve(wanted, int8_native=arithmetic.native, on_cpu=providers[0] == CPU)
    asked: Precision = card.default_precision if wanted == "auto" else wanted
    if served.precision != asked and wanted == "auto":
        reason = f"{providers[0]} runs the session and the INT8 QDQ graph is a CPU file"
        log.info("model_precision_fallback", model=name, wanted=asked, serving=served.precision, reason=reason)
    elif served.precision != asked:
        log.warning("model_precision_unavailable", model=name, wanted=wanted, serving=served.precision)
    if served.exact_int8:
        log.info("model_int8_exact_emulation", model=name, precision=served.precision, reason=arithmetic.reason)
    return served


def warm_up(runtime: OnnxModel, card: ModelCard, settings: Settings) -> None:
    """Run blank batches through the graph: first-run allocations happen now, and a graph whose output does not
    fit the card fails here rather than on a client's request. Then the decoders, so the first request does not
    load a codec either."""
    shape = (3, card.input.height, card.input.width)
    sizes = sorted({1, settings.batch_max_size})
    for _ in range(settings.warmup_runs):
        for size in sizes:
            out = runtime.run(np.zeros((size, *shape), dtype=np.float32))
            if out.shape != (size, len(card.labels)):
                raise ValueError(f"output shape {out.shape} does not match {len(card.labels)} labels in model.json")
    limits = ImageLimits(settings.max_upload_bytes, settings.max_image_pixels, settings.max_frames)
    warm_up_decoders(card.preprocessing, card.input, limits)
