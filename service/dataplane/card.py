"""The typed form of `model.json`: everything the service needs to serve a model without code changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class InputSpec(BaseModel):
    name: str = "input"
    height: int = Field(gt=0)
    width: int = Field(gt=0)


class OutputSpec(BaseModel):
    name: str | None = None
    kind: Literal["probabilities", "logits"] = "probabilities"


class Preprocessing(BaseModel):
    """Resize (short side, aspect kept), centre-crop to the input size, then `(x - mean) / std` on 0..255."""

    resize_short_side: int | None = Field(None, gt=0)
    crop: Literal["center", "none"] = "center"
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @field_validator("std")
    @classmethod
    def _std_nonzero(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(s == 0 for s in value):
            raise ValueError("std must be non-zero")
        return value


class Decision(BaseModel):
    """Answer `fallback_label` when the other labels together hold less than `min_mass` probability."""

    fallback_label: str
    min_mass: float = Field(ge=0, le=1)


class OnnxSpec(BaseModel):
    file: str = "model.onnx"
    sha256: str | None = None
    opset: int | None = None
    size_bytes: int | None = None


Precision = Literal["fp32", "int8"]
PRECISIONS: tuple[Precision, ...] = ("fp32", "int8")


class VariantSpec(BaseModel):
    """Another ONNX file of the same model (same labels, input, preprocessing and decision rule), e.g. an INT8
    quantization. The conversion pipeline adds its precision, method and answer-level figures as extra keys."""

    model_config = ConfigDict(extra="allow")

    file: str
    sha256: str | None = None
    size_bytes: int | None = None
    exact_on_every_cpu: bool = True
    """False: the file's answers hold only where integer sums are exact (VNNI CPUs, or ONNX Runtime's exact
    emulation); AVX2's fast INT8 kernel saturates full 8-bit weights and moves them (service/dataplane/cpu.py).
    Older cards' 7-bit files cannot saturate, so they compute alike on every CPU."""


class Resolved(NamedTuple):
    """What a model serves: which file, at which precision, and how its session must run."""

    precision: Precision
    file: str
    sha256: str | None
    exact_int8: bool
    """The session must emulate exact INT8 sums (`session.x64quantprecision`): the card's INT8 answers on a CPU
    without VNNI, at about FP32's speed there instead of INT8's full speed."""


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    version: str
    description: str = ""
    labels: list[str] = Field(min_length=1)
    input: InputSpec
    output: OutputSpec = OutputSpec()
    preprocessing: Preprocessing = Preprocessing()
    decision: Decision | None = None
    onnx: OnnxSpec = OnnxSpec()
    license: str | None = None
    variants: dict[str, VariantSpec] = {}
    """By precision (`int8`); `onnx` is the FP32 file. Absent in older cards: they serve FP32."""
    default_precision: Precision = "fp32"
    """What CATDOG_PRECISION=auto serves: set to `int8` by `conversion quantize` only when INT8 kept the answers."""

    @model_validator(mode="after")
    def _fallback_is_a_label(self) -> ModelCard:
        if self.decision and self.decision.fallback_label not in self.labels:
            raise ValueError(f"decision.fallback_label {self.decision.fallback_label!r} is not among labels")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        if self.default_precision != "fp32" and self.default_precision not in self.variants:
            raise ValueError(f"default_precision {self.default_precision!r} has no entry in variants")
        return self

    @property
    def precisions(self) -> list[Precision]:
        """The precisions this card offers: always fp32, plus each known variant."""
        return [p for p in PRECISIONS if p == "fp32" or p in self.variants]

    def resolve(self, wanted: Literal["auto", "fp32", "int8"], *, int8_native: bool, on_cpu: bool = True) -> Resolved:
        """What to serve for a CATDOG_PRECISION value; the caller logs whatever differs from what was asked.

        `int8_native`: this CPU sums INT8 dot products exactly (VNNI; service/dataplane/cpu.py). An INT8 file that
        is not exact on every CPU then runs natively; elsewhere its session emulates exact sums, so every machine
        gives the card's answers (AVX2's fast kernels would move them; emulated it runs about as fast as
        FP32 there, docs/benchmarks.md). `on_cpu`: False under another execution provider (CUDA), where `auto`
        serves FP32, since the QDQ INT8 graph is a CPU file.

        - `fp32`: FP32.
        - `auto`: the card's default precision (FP32 off the CPU).
        - `int8`: the variant.
        - a precision the card does not offer: FP32."""
        precision: Precision = self.default_precision if wanted == "auto" else wanted
        variant = self.variants.get(precision) if precision != "fp32" else None
        if variant is None or (wanted == "auto" and not on_cpu):
            return Resolved("fp32", self.onnx.file, self.onnx.sha256, exact_int8=False)
        emulate = on_cpu and not (variant.exact_on_every_cpu or int8_native)
        return Resolved(precision, variant.file, variant.sha256, exact_int8=emulate)

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
