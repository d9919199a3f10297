"""Typed FastAPI dependencies: routes declare what they need instead of reaching into app.state.

All are `async def`: FastAPI runs a plain `def` dependency in its threadpool, a thread hop per dependency per
request for what is an attribute read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from service.dataplane.inference import Classifier
from service.dataplane.repository import ModelRepository
from service.lifecycle import Lifecycle
from service.observability import ServiceMetrics
from service.settings import Settings


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


async def _repository(request: Request) -> ModelRepository:
    return request.app.state.repository  # type: ignore[no-any-return]


async def _metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


async def _lifecycle(request: Request) -> Lifecycle:
    return request.app.state.lifecycle  # type: ignore[no-any-return]


async def _classifier(request: Request) -> Classifier:
    return request.app.state.classifier  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(_settings)]
RepositoryDep = Annotated[ModelRepository, Depends(_repository)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]
LifecycleDep = Annotated[Lifecycle, Depends(_lifecycle)]
ClassifierDep = Annotated[Classifier, Depends(_classifier)]


@dataclass(frozen=True, slots=True)
class PredictContext:
    """Everything a prediction route needs, as one dependency (the seed routes and the generic one share it)."""

    settings: Settings
    repository: ModelRepository
    classifier: Classifier
    metrics: ServiceMetrics
    lifecycle: Lifecycle


async def _predict_context(request: Request) -> PredictContext:
    """One dependency, not five: FastAPI solves each sub-dependency per request (about 20 us apiece). The context
    is built once per app from `app.state` and kept there."""
    state = request.app.state
    context: PredictContext | None = getattr(state, "predict_context", None)
    if context is None:
        context = PredictContext(state.settings, state.repository, state.classifier, state.metrics, state.lifecycle)
        state.predict_context = context
    return context


PredictDep = Annotated[PredictContext, Depends(_predict_context)]
