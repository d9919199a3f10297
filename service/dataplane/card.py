"""The typed form of `model.json`: everything the service needs to serve a model without code changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

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

    @model_validator(mode="after")
    def _fallback_is_a_label(self) -> ModelCard:
        if self.decision and self.decision.fallback_label not in self.labels:
            raise ValueError(f"decision.fallback_label {self.decision.fallback_label!r} is not among labels")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("labels must be unique")
        return self

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        return cls.model_validate(json.loads(path.read_text(encoding="utf-8")))
