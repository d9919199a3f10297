"""Typed FastAPI dependencies: routes declare what they need instead of reaching into app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.lifecycle import Lifecycle
from service.observability import ServiceMetrics
from service.repository import ModelRepository
from service.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def _repository(request: Request) -> ModelRepository:
    return request.app.state.repository  # type: ignore[no-any-return]


def _metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics  # type: ignore[no-any-return]


def _lifecycle(request: Request) -> Lifecycle:
    return request.app.state.lifecycle  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(_settings)]
RepositoryDep = Annotated[ModelRepository, Depends(_repository)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]
LifecycleDep = Annotated[Lifecycle, Depends(_lifecycle)]
