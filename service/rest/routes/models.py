"""GET /v1/models and GET /v1/models/{name}: what the repository serves and how."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import ValidationError

from service.dataplane.card import ModelCard, Precision
from service.dataplane.dataplane import DataPlane
from service.dataplane.repository import ServedModel
from service.rest.schemas import ErrorResponse, HeldOutBody, InputBody, ModelBody, ModelsResponse


def describe(model: ServedModel) -> ModelBody:
    card = model.card
    if card is None:
        return ModelBody(name=model.name, status=model.status, error=model.error)
    return ModelBody(
        name=model.name,
        status=model.status,
        error=model.error,
        version=card.version,
        description=card.description,
        labels=card.labels,
        input=InputBody(**card.input.model_dump()),
        preprocessing=card.preprocessing.model_dump(),
        decision=card.decision.model_dump() if card.decision else None,
        sha256=model.sha256,
        provider=model.provider,
        precision=model.precision,
        precisions=list(card.precisions),
        license=card.license,
        heldout=_heldout(card, model.precision),
        caveat=(card.model_extra or {}).get("caveat"),
    )


def _heldout(card: ModelCard, precision: Precision | None) -> HeldOutBody | None:
    """The held-out summary of the file being served, when it has one that reads (a card's extra sections are
    not validated): a variant's own section (its figures differ from FP32's), else the card's."""
    variant = card.variants.get(precision) if precision and precision != "fp32" else None
    own = (variant.model_extra or {}).get("heldout") if variant else None
    section = own if isinstance(own, dict) else (card.model_extra or {}).get("heldout")
    if not isinstance(section, dict):
        return None
    try:
        return HeldOutBody.model_validate(section)
    except ValidationError:
        return None


def router(data_plane: DataPlane) -> APIRouter:
    """GET /v1/models and GET /v1/models/{name} over `data_plane`."""
    routes = APIRouter(prefix="/v1/models", tags=["models"])
    repository = data_plane.repository

    @routes.get("", response_model=ModelsResponse, summary="Every model in the repository")
    async def list_models() -> ModelsResponse:
        return ModelsResponse(models=[describe(m) for m in repository.models.values()])

    @routes.get(
        "/{name}",
        response_model=ModelBody,
        responses={404: {"model": ErrorResponse}},
        summary="One model's metadata",
    )
    async def get_model(name: str) -> ModelBody:
        return describe(repository.known(name))

    return routes
