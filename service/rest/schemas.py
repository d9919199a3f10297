"""Response bodies, as pydantic models: they document the API in /docs and keep the JSON shape stable."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class PredictionBody(BaseModel):
    label: str = Field(examples=["cat"])
    confidence: float = Field(ge=0, le=1, examples=[0.97])
    probabilities: dict[str, float] = Field(examples=[{"cat": 0.97, "dog": 0.02, "other": 0.01}])
    filename: str | None = None
    width: int = Field(description="image width as uploaded")
    height: int


class PredictResponse(PredictionBody):
    """One image: the seed's flat answer."""

    model: str
    model_version: str
    request_id: str


class MultiPredictResponse(BaseModel):
    """Several images in one request: one prediction per file, in order."""

    model: str
    model_version: str
    request_id: str
    predictions: list[PredictionBody]


class InputBody(BaseModel):
    name: str
    height: int
    width: int


class ClassScore(BaseModel):
    correct: int
    total: int


class HeldOutBody(BaseModel):
    """The card's figures on photos the model never saw (model.json `heldout`; docs/models.md)."""

    method: str
    correct: int
    total: int
    per_class: dict[str, ClassScore]
    ece: float | None = None


class ModelBody(BaseModel):
    name: str
    status: Literal["loading", "ready", "failed"]
    error: str | None = None
    version: str | None = None
    description: str | None = None
    labels: list[str] = []
    input: InputBody | None = None
    preprocessing: dict[str, object] | None = None
    decision: dict[str, object] | None = None
    sha256: str | None = None
    provider: str | None = None
    precision: str | None = Field(None, description="the precision being served: fp32 or int8 (CATDOG_PRECISION)")
    precisions: list[str] = Field([], description="the precisions the card offers")
    license: str | None = None
    heldout: HeldOutBody | None = None
    caveat: str | None = None


class ModelsResponse(BaseModel):
    models: list[ModelBody]


class VersionResponse(BaseModel):
    version: str
    git_revision: str | None
    onnxruntime: str
    python: str
    models: dict[str, str | None]
    providers: dict[str, str | None]


class ReadyResponse(BaseModel):
    ready: bool
    status: str
    models: dict[str, str]
    failed: dict[str, str] = {}


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorResponse(BaseModel):
    error: ErrorDetail
